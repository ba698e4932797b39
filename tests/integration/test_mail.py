"""`libresh mail` against real SMTP servers (aiosmtpd, started here on 127.0.0.1) and the lab's
API server: the test message arrives with the configured from-address and recipient, after
the server saw the configured login over STARTTLS or implicit TLS with a certificate of a test
CA; a wrong password, an untrusted certificate, a refused recipient and a relay that does not
answer each end with their own message and exit code; a refused `mail set` changes nothing;
Vaultwarden installed after `mail set` carries the relay as its image reads it, and one
installed before gets it when applied again."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from libresh_cli.errors import ExitCode
from libresh_cli.kube.client import KubeClient
from libresh_cli.lab.pki import LabPki, create_pki
from tests.integration.conftest import Lab
from tests.integration.test_apps import LIBRESH

pytestmark = [
    pytest.mark.integration,
    # The implicit-TLS server takes AUTH without STARTTLS on purpose (it is TLS already), and
    # aiosmtpd warns about its own deprecated attribute when a login succeeds.
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"),
    pytest.mark.filterwarnings("ignore:Session.login_data is deprecated"),
]

USER = "cloud@example.org"
PASSWORD = "s3cret pass:word"  # a space and a colon: no quoting problem on the way
SENDER = "cloud@example.org"
REFUSED_DOMAIN = "refused.example.org"


@dataclass
class Received:
    """What a server saw: logins tried (mechanism, user, password), messages accepted."""

    logins: list[tuple[str, str, str]] = field(default_factory=list)
    messages: list[tuple[str, list[str], bytes, bool]] = field(default_factory=list)

    def clear(self) -> None:
        self.logins.clear()
        self.messages.clear()


class Recorder:
    """An aiosmtpd handler: refuses recipients at REFUSED_DOMAIN, keeps every message."""

    def __init__(self, received: Received) -> None:
        self.received = received

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address.endswith("@" + REFUSED_DOMAIN):
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.received.messages.append(
            (str(envelope.mail_from), list(envelope.rcpt_tos), content, _over_tls(server))
        )
        return "250 Message accepted"


def _over_tls(server: SMTP) -> bool:
    transport = server.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None


def authenticator(received: Received) -> Any:
    def check(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> Any:
        assert isinstance(data, LoginPassword)
        login, password = data.login.decode(), data.password.decode()
        received.logins.append((mechanism, login, password))
        # handled=False: aiosmtpd answers 535 itself (its default leaves the client waiting).
        return AuthResult(success=(login, password) == (USER, PASSWORD), handled=False)

    return check


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Relays:
    pki: LabPki
    received: Received
    starttls_port: int
    tls_port: int
    plain_port: int


@pytest.fixture(scope="module")
def relays(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relays]:
    """Three real SMTP servers: STARTTLS required before login and mail (587-like), TLS from
    the first byte (465-like), and plain without login (a relay on a private network). Their
    certificate is a test CA's, for 127.0.0.1."""
    pki = create_pki(tmp_path_factory.mktemp("smtp-pki"), "smtp-test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.serving_cert, pki.serving_key)
    received = Received()
    handler = Recorder(received)
    ports = free_port(), free_port(), free_port()
    servers = [
        Controller(
            handler,
            hostname="127.0.0.1",
            port=ports[0],
            tls_context=context,
            require_starttls=True,
            authenticator=authenticator(received),
            auth_required=True,
        ),
        Controller(
            handler,
            hostname="127.0.0.1",
            port=ports[1],
            ssl_context=context,
            authenticator=authenticator(received),
            auth_required=True,
            # aiosmtpd only counts STARTTLS as TLS for AUTH; this connection is TLS from its
            # first byte (the message's over_tls says so).
            auth_require_tls=False,
        ),
        Controller(handler, hostname="127.0.0.1", port=ports[2]),
    ]
    started: list[Controller] = []
    try:
        for server in servers:
            server.start()
            started.append(server)
        yield Relays(pki, received, *ports)
    finally:
        for server in started:
            server.stop()


def libresh(
    lab: Lab, *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LIBRESH, "--kubeconfig", str(lab.kubeconfig), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        env={**lab.cli_env(), "COLUMNS": "200"},
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def password_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("smtp-secret") / "password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def mail(lab: Lab, relays: Relays) -> Iterator[Relays]:
    """No relay before the test, none after it (other tests' installs must not get one)."""
    ok(libresh(lab, "mail", "unset", "--yes"))
    relays.received.clear()
    yield relays
    ok(libresh(lab, "mail", "unset", "--yes"))


def set_starttls(lab: Lab, relays: Relays, password_file: Path, *extra: str) -> None:
    ok(
        libresh(
            lab, "mail", "set", "--host", "127.0.0.1", "--port", str(relays.starttls_port),
            "--tls", "starttls", "--user", USER, "--password-file", str(password_file),
            "--from", SENDER, *extra,
        )
    )  # fmt: skip


def shown(lab: Lab) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(ok(libresh(lab, "mail", "show", "-o", "json")).stdout)
    return document


def test_the_test_message_arrives_over_starttls_with_the_configured_login(
    lab: Lab, mail: Relays, password_file: Path
) -> None:
    set_starttls(lab, mail, password_file)
    assert shown(lab) == {
        "configured": True,
        "host": "127.0.0.1",
        "port": mail.starttls_port,
        "tls": "starttls",
        "user": USER,
        "from": SENDER,
        "password": "(set)",
    }
    result = ok(
        libresh(
            lab, "mail", "test", "--to", "alice@example.net", "--ca-file",
            str(mail.pki.ca_cert), "-o", "json",
        )
    )  # fmt: skip
    sent = json.loads(result.stdout)
    assert PASSWORD not in result.stdout + result.stderr
    assert [login[1:] for login in mail.received.logins] == [(USER, PASSWORD)]
    [(envelope_from, recipients, content, over_tls)] = mail.received.messages
    assert (envelope_from, recipients, over_tls) == (SENDER, ["alice@example.net"], True)
    message = message_from_bytes(content)
    assert (message["From"], message["To"]) == (SENDER, "alice@example.net")
    assert message["Message-ID"] == sent["message_id"]
    assert "libresh mail test" in message.get_payload()


def test_implicit_tls_and_a_relay_without_login_deliver_too(
    lab: Lab, mail: Relays, password_file: Path
) -> None:
    ok(
        libresh(
            lab, "mail", "set", "--host", "127.0.0.1", "--port", str(mail.tls_port), "--tls",
            "tls", "--user", USER, "--password-file", "-", "--from", SENDER,
            stdin=PASSWORD + "\n",
        )
    )  # fmt: skip
    ok(libresh(lab, "mail", "test", "--to", "bob@example.net", "--ca-file", str(mail.pki.ca_cert)))
    assert [login[1:] for login in mail.received.logins] == [(USER, PASSWORD)]
    assert [m[:2] + m[3:] for m in mail.received.messages] == [(SENDER, ["bob@example.net"], True)]
    mail.received.clear()
    ok(
        libresh(
            lab, "mail", "set", "--host", "127.0.0.1", "--port", str(mail.plain_port), "--tls",
            "none", "--from", "noreply@example.org",
        )
    )  # fmt: skip
    ok(libresh(lab, "mail", "test", "--to", "carol@example.net"))
    assert mail.received.logins == []
    assert [m[:2] + m[3:] for m in mail.received.messages] == [
        ("noreply@example.org", ["carol@example.net"], False)
    ]


def test_each_refusal_has_its_message_and_exit_code(
    lab: Lab, mail: Relays, password_file: Path, tmp_path: Path
) -> None:
    set_starttls(lab, mail, password_file)
    ca = ("--ca-file", str(mail.pki.ca_cert))
    # A certificate of a CA this machine does not trust.
    untrusted = libresh(lab, "mail", "test", "--to", "alice@example.net")
    assert untrusted.returncode == ExitCode.UNREACHABLE, untrusted.stderr
    assert "certificate is not trusted" in untrusted.stderr and "--ca-file" in untrusted.stderr
    # A recipient the relay refuses.
    refused = libresh(lab, "mail", "test", "--to", f"nobody@{REFUSED_DOMAIN}", *ca)
    assert refused.returncode == ExitCode.BAD_INPUT, refused.stderr
    assert f"refused the recipient --to 'nobody@{REFUSED_DOMAIN}'" in refused.stderr
    assert "550 5.1.1 No such mailbox here" in refused.stderr
    # A wrong password.
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password")
    wrong.chmod(0o600)
    set_starttls(lab, mail, wrong)
    denied = libresh(lab, "mail", "test", "--to", "alice@example.net", *ca, "-o", "json")
    assert denied.returncode == ExitCode.UNREACHABLE, denied.stderr
    assert f"refused the login of '{USER}'" in denied.stderr
    assert json.loads(denied.stdout)["exit_code"] == ExitCode.UNREACHABLE
    assert "not the password" not in denied.stdout + denied.stderr
    assert mail.received.messages == []


def test_a_relay_that_does_not_answer_fails_fast(lab: Lab, mail: Relays) -> None:
    closed = free_port()  # nothing listens there: refused at once
    ok(
        libresh(
            lab, "mail", "set", "--host", "127.0.0.1", "--port", str(closed), "--tls", "none",
            "--from", SENDER,
        )
    )  # fmt: skip
    started = time.monotonic()
    result = libresh(lab, "mail", "test", "--to", "alice@example.net")
    assert result.returncode == ExitCode.UNREACHABLE, result.stderr
    assert f"The relay 127.0.0.1:{closed} did not answer" in result.stderr
    # A server that accepts the connection and never greets: the timeout ends it.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        ok(
            libresh(
                lab, "mail", "set", "--host", "127.0.0.1", "--port", str(port), "--tls", "none",
                "--from", SENDER,
            )
        )  # fmt: skip
        started = time.monotonic()
        result = libresh(lab, "mail", "test", "--to", "alice@example.net", "--timeout", "1")
        took = time.monotonic() - started
    assert result.returncode == ExitCode.UNREACHABLE, result.stderr
    assert "no answer in time" in result.stderr
    assert took < 10, f"took {took:.1f} s with --timeout 1"


def test_a_refused_mail_set_changes_nothing(lab: Lab, mail: Relays, password_file: Path) -> None:
    set_starttls(lab, mail, password_file)
    before = shown(lab)
    common = ("--tls", "starttls", "--user", USER, "--password-file", str(password_file))
    for args, named in [
        (("--host", "smtp example.org", "--from", SENDER, *common), "--host 'smtp example.org'"),
        (("--host", "127.0.0.1", "--port", "0", "--from", SENDER, *common), "--port 0"),
        (("--host", "127.0.0.1", "--from", "cloud", *common), "--from 'cloud'"),
        (("--host", "127.0.0.1", "--from", SENDER, "--tls", "ssl"), "--tls"),
        (
            ("--host", "127.0.0.1", "--from", SENDER, "--user", "u", "--password-file", "/nope"),
            "--password-file /nope",
        ),
        (("--host", "127.0.0.1", "--from", SENDER, "--user", "someone-else"), "--password-file"),
    ]:
        result = libresh(lab, "mail", "set", *args)
        assert result.returncode == ExitCode.BAD_INPUT, (args, result.stderr)
        assert named in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert shown(lab) == before
    # The same login on another port keeps its password.
    ok(
        libresh(
            lab, "mail", "set", "--host", "127.0.0.1", "--port", str(mail.tls_port), "--tls",
            "tls", "--user", USER, "--from", SENDER,
        )
    )  # fmt: skip
    ok(
        libresh(
            lab, "mail", "test", "--to", "alice@example.net", "--ca-file", str(mail.pki.ca_cert)
        )
    )
    assert [login[1:] for login in mail.received.logins] == [(USER, PASSWORD)]
    # And a test with no relay says so.
    ok(libresh(lab, "mail", "unset", "--yes"))
    assert shown(lab) == {"configured": False}
    missing = libresh(lab, "mail", "test", "--to", "alice@example.net")
    assert missing.returncode == ExitCode.PREREQUISITE_MISSING
    assert "libresh mail set" in missing.stderr


# -- apps -------------------------------------------------------------------------------------


def _env(kube: KubeClient, namespace: str) -> dict[str, Any]:
    deployment = kube.get("apps/v1", "Deployment", "vaultwarden", namespace)
    assert deployment is not None
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    found: dict[str, Any] = {}
    for variable in container.get("env", []):
        ref = variable.get("valueFrom", {}).get("secretKeyRef")
        found[variable["name"]] = (ref["name"], ref["key"]) if ref else variable.get("value")
    return {k: v for k, v in found.items() if k.startswith("SMTP_")}


def test_vaultwarden_gets_the_relay_and_a_changed_relay_when_applied_again(
    lab: Lab, kube: KubeClient, mail: Relays, password_file: Path
) -> None:
    name = f"vw{uuid.uuid4().hex[:8]}"
    install = ("install", "vaultwarden", "--name", name, "--domain", f"{name}.example.org")
    try:
        # Installed with no relay: mail off, and the install says how to turn it on.
        first = ok(libresh(lab, *install, "--yes", timeout=300))
        assert "no SMTP relay is set" in first.stderr and "libresh mail set" in first.stderr
        assert _env(kube, name) == {}
        assert kube.get("v1", "Secret", "libresh-mail", name) is None
        # The relay set afterwards: `mail set` names the instance and the command.
        result = libresh(
            lab, "mail", "set", "--host", "127.0.0.1", "--port", str(mail.starttls_port),
            "--tls", "starttls", "--user", USER, "--password-file", str(password_file),
            "--from", SENDER,
        )  # fmt: skip
        command = f"libresh install vaultwarden --name {name} --yes"
        assert command in ok(result).stderr
        ok(libresh(lab, *install, "--yes", timeout=300))
        assert _env(kube, name) == {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(mail.starttls_port),
            "SMTP_SECURITY": "starttls",
            "SMTP_FROM": SENDER,
            "SMTP_USERNAME": USER,
            "SMTP_PASSWORD": ("libresh-mail", "password"),
        }
        secret = kube.get("v1", "Secret", "libresh-mail", name)
        assert secret is not None
        values = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert values == {
            "host": "127.0.0.1",
            "port": str(mail.starttls_port),
            "tls": "starttls",
            "user": USER,
            "password": PASSWORD,
            "from": SENDER,
        }
        # Another relay: applied again, the Deployment carries it.
        ok(
            libresh(
                lab, "mail", "set", "--host", "127.0.0.1", "--port", str(mail.plain_port),
                "--tls", "none", "--from", "noreply@example.org",
            )
        )  # fmt: skip
        ok(libresh(lab, *install, "--yes", timeout=300))
        assert _env(kube, name) == {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(mail.plain_port),
            "SMTP_SECURITY": "off",
            "SMTP_FROM": "noreply@example.org",
        }
        # Unset: the next apply turns mail off and prunes the Secret.
        ok(libresh(lab, "mail", "unset", "--yes"))
        ok(libresh(lab, *install, "--yes", timeout=300))
        assert _env(kube, name) == {}
        assert kube.get("v1", "Secret", "libresh-mail", name) is None
    finally:
        kube.delete("v1", "Namespace", name)
