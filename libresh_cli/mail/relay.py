"""What an SMTP relay setting is, and the checks that keep a bad value out of the cluster.

Pure: no network, no cluster. The stored Secret and the Secret apps read have the same keys
(CONNECTION_KEYS), so what `mail show` prints is what the apps get, the password aside."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from libresh_cli.errors import BadInputError

TLS_MODES = ("starttls", "tls", "none")
# The ports each mode is usually served on (RFC 8314: 465 implicit TLS, 587 submission with
# STARTTLS; 25 relay to relay).
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
CONNECTION_KEYS = ("host", "port", "tls", "user", "password", "from")

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOST = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")
# The dot-atom local part of RFC 5322 (no quoted strings: few relays accept them, and none of
# the apps' configuration checks do) and a domain name of at least two labels.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
ADDRESS = re.compile(rf"(?=.{{3,254}}$)({_ATOM}(?:\.{_ATOM})*)@({_LABEL}(?:\.{_LABEL})+)", re.I)
MAX_USER = 256
MAX_PASSWORD = 1024


@dataclass(frozen=True)
class Relay:
    """An SMTP relay: where, how (tls), who (user and password; no user: no login) and the
    address messages are sent from."""

    host: str
    port: int
    tls: str
    from_address: str
    user: str = ""
    password: str = field(default="", repr=False)

    def public(self) -> dict[str, Any]:
        """Everything but the password: for `mail show` and -o json."""
        return {
            "host": self.host,
            "port": self.port,
            "tls": self.tls,
            "user": self.user,
            "from": self.from_address,
            "password": "(set)" if self.password else "",
        }

    def connection_values(self) -> dict[str, str]:
        """The Secret's values, stored in libresh-system and handed to apps (CONNECTION_KEYS)."""
        return {
            "host": self.host,
            "port": str(self.port),
            "tls": self.tls,
            "user": self.user,
            "password": self.password,
            "from": self.from_address,
        }

    @classmethod
    def from_values(cls, values: Mapping[str, str]) -> Relay:
        """A relay read back from a Secret, checked as `mail set` checks it (a Secret edited by
        hand must not put into an app what the command line would refuse)."""
        missing = [key for key in CONNECTION_KEYS if key not in values]
        if missing:
            raise BadInputError(
                "The relay setting (Secret libresh-system/libresh-mail) lacks "
                f"{', '.join(missing)}.",
                hint="Set it again: libresh mail set --host … --from …",
            )
        port = values["port"]
        if not port.isdigit():
            raise BadInputError(f"The stored relay's port {port!r} is not a number.")
        return check(
            cls(
                host=values["host"],
                port=int(port),
                tls=values["tls"],
                from_address=values["from"],
                user=values["user"],
                password=values["password"],
            )
        )


def check(relay: Relay) -> Relay:
    """The relay if every field is valid, else a BadInputError naming the option and value."""
    check_host(relay.host)
    if not 1 <= relay.port <= 65535:
        raise BadInputError(f"--port {relay.port} is out of range (1-65535).")
    if relay.tls not in TLS_MODES:
        raise BadInputError(
            f"--tls {relay.tls!r} is not one of {', '.join(TLS_MODES)}.",
            hint="starttls: plain connection upgraded to TLS (usually port 587); tls: TLS from "
            "the first byte (port 465); none: no encryption (a relay on a private network).",
        )
    check_address(relay.from_address, "--from")
    if relay.user and (len(relay.user) > MAX_USER or not relay.user.isprintable()):
        raise BadInputError(
            f"--user must be at most {MAX_USER} printable characters (no line breaks)."
        )
    if relay.user and not relay.password:
        raise BadInputError(
            f"--user {relay.user!r} needs a password.",
            hint="Give it with --password-file FILE (or - for standard input).",
        )
    if relay.password and not relay.user:
        raise BadInputError("A password without --user: give the user name it belongs to.")
    if len(relay.password) > MAX_PASSWORD or any(c in relay.password for c in "\r\n\0"):
        raise BadInputError(f"The password must be one line of at most {MAX_PASSWORD} characters.")
    return relay


def check_host(host: str) -> str:
    if HOST.fullmatch(host) or _is_ip(host):
        return host
    raise BadInputError(
        f"--host {host!r} is not a host name or IP address.",
        hint="Give the relay's name in lowercase (smtp.example.org) or its address.",
    )


def check_address(address: str, option: str) -> str:
    """An email address libresh hands on (no display name, no line breaks)."""
    if ADDRESS.fullmatch(address):
        return address
    raise BadInputError(
        f"{option} {address!r} is not an email address.",
        hint="Write it as name@example.org, without a display name or angle brackets.",
    )


def split_address(address: str) -> tuple[str, str]:
    """('name', 'example.org') of 'name@example.org': Nextcloud takes the two apart."""
    local, _, domain = address.rpartition("@")
    return local, domain


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
