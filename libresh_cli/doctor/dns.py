"""A domain's addresses, asked of one DNS server over UDP (RFC 1035), with the standard library.

Not the system's resolver (getaddrinfo): that one also reads /etc/hosts and caches, and
libresh wants to see what the world sees, from a server it can name (`--nameserver`, in tests
a server the test runs). The wire format is encoded and decoded by pure functions."""

from __future__ import annotations

import ipaddress
import secrets
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

A, AAAA, CNAME = 1, 28, 5
IN = 1
RCODES = {1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
TIMEOUT = 2.0
RESOLV_CONF = Path("/etc/resolv.conf")


class DnsError(Exception):
    """The server did not answer, or answered something that is not an answer."""


@dataclass(frozen=True)
class Answer:
    addresses: tuple[str, ...]
    rcode: str  # NOERROR, NXDOMAIN, …


def query(name: str, qtype: int, ident: int) -> bytes:
    header = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)  # recursion desired
    return header + encode_name(name) + struct.pack("!HH", qtype, IN)


def encode_name(name: str) -> bytes:
    labels = [label.encode("idna") for label in name.rstrip(".").split(".") if label]
    if any(len(label) > 63 for label in labels):
        raise DnsError(f"{name} has a label longer than 63 characters")
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


def parse_answer(message: bytes, ident: int) -> Answer:
    """The A and AAAA addresses of an answer (any name of a CNAME chain), and its rcode."""
    if len(message) < 12:
        raise DnsError("a DNS answer shorter than its header")
    got, flags, questions, answers, _, _ = struct.unpack("!HHHHHH", message[:12])
    if got != ident or not flags & 0x8000:
        raise DnsError("an answer to another question")
    rcode = flags & 0x000F
    offset = 12
    for _ in range(questions):
        offset = skip_name(message, offset) + 4
    found = []
    for _ in range(answers):
        offset = skip_name(message, offset)
        if offset + 10 > len(message):
            raise DnsError("a truncated DNS answer")
        rtype, _, _, length = struct.unpack("!HHIH", message[offset : offset + 10])
        data = message[offset + 10 : offset + 10 + length]
        offset += 10 + length
        if rtype == A and length == 4:
            found.append(str(ipaddress.IPv4Address(data)))
        elif rtype == AAAA and length == 16:
            found.append(str(ipaddress.IPv6Address(data)))
    return Answer(tuple(found), "NOERROR" if rcode == 0 else RCODES.get(rcode, f"rcode {rcode}"))


def skip_name(message: bytes, offset: int) -> int:
    while True:
        if offset >= len(message):
            raise DnsError("a truncated DNS name")
        length = message[offset]
        if length & 0xC0 == 0xC0:  # a pointer ends the name
            return offset + 2
        if length == 0:
            return offset + 1
        offset += 1 + length


def resolve(name: str, server: tuple[str, int], timeout: float = TIMEOUT) -> Answer:
    """A and AAAA records of `name` from `server`; one retry each, as resolvers do."""
    addresses: list[str] = []
    rcode = "NOERROR"
    for qtype in (A, AAAA):
        answer = _ask(name, qtype, server, timeout)
        addresses += answer.addresses
        rcode = answer.rcode if rcode == "NOERROR" else rcode
    return Answer(tuple(addresses), rcode)


def _ask(name: str, qtype: int, server: tuple[str, int], timeout: float) -> Answer:
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    for _ in range(2):
        ident = secrets.randbelow(0x10000)
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.sendto(query(name, qtype, ident), server)
                while True:
                    message, sender = sock.recvfrom(4096)
                    if sender[0] == server[0]:
                        try:
                            return parse_answer(message, ident)
                        except DnsError:
                            continue  # not ours (a late answer to the first try): read on
            except TimeoutError:
                continue
            except OSError as error:
                raise DnsError(f"cannot ask {server[0]}: {error.strerror or error}") from error
    raise DnsError(f"{server[0]} port {server[1]} did not answer in {timeout * 2:.0f} s")


def parse_server(text: str) -> tuple[str, int]:
    """`IP`, `IP:PORT` or `[IPv6]:PORT`, as --nameserver takes it."""
    text = text.strip()
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else 53
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text.isdigit():
            raise ValueError(f"{text!r}: the port is not a number")
        port = int(port_text)
    ipaddress.ip_address(host)  # ValueError when it is not an address
    return host, port


def system_nameserver(resolv_conf: Path = RESOLV_CONF) -> tuple[str, int] | None:
    """The first `nameserver` of /etc/resolv.conf (what this machine asks), if any."""
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                return parse_server(words[1].split("%")[0])
            except ValueError:
                continue
    return None
