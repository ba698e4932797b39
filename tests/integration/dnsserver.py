"""A DNS server on 127.0.0.1 for the tests: answers A and AAAA questions from a table (name ->
addresses), NXDOMAIN for other names. Written from RFC 1035 with the standard library
(socketserver), apart from libresh's own encoder and decoder, so a test of libresh's resolver
is not that resolver agreeing with itself."""

from __future__ import annotations

import ipaddress
import socketserver
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _question(message: bytes) -> tuple[str, int, int]:
    """(name, qtype, end offset) of the first question; names in questions are not
    compressed."""
    labels, offset = [], 12
    while message[offset]:
        length = message[offset]
        labels.append(message[offset + 1 : offset + 1 + length].decode("ascii"))
        offset += 1 + length
    qtype, _ = struct.unpack("!HH", message[offset + 1 : offset + 5])
    return ".".join(labels).lower(), qtype, offset + 5


def answer(message: bytes, table: dict[str, list[str]]) -> bytes:
    ident = struct.unpack("!H", message[:2])[0]
    name, qtype, end = _question(message)
    addresses = [ipaddress.ip_address(a) for a in table.get(name, [])]
    wanted = [a for a in addresses if (a.version == 4) == (qtype == 1)]
    rcode = 0 if name in table else 3  # NXDOMAIN
    flags = 0x8000 | 0x0400 | 0x0100 | 0x0080 | rcode  # answer, authoritative, RD, RA
    header = struct.pack("!HHHHHH", ident, flags, 1, len(wanted), 0, 0)
    records = b"".join(
        struct.pack("!HHHIH", 0xC00C, qtype, 1, 60, len(a.packed)) + a.packed for a in wanted
    )
    return header + message[12:end] + records


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        server: Any = self.server
        server.asked.append(_question(data)[0])
        sock.sendto(answer(data, server.table), self.client_address)


@contextmanager
def dns_server(table: dict[str, list[str]]) -> Iterator[Any]:
    """A running server; `.server_address` is (127.0.0.1, port), `.table` may be changed
    while it runs, `.asked` lists the names asked."""
    server: Any = socketserver.ThreadingUDPServer(("127.0.0.1", 0), _Handler)
    server.table, server.asked = table, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
