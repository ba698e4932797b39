"""The kube client's retries, against a real HTTP server on localhost that answers as an API
server does while it restarts or sheds load (503, 429 with Retry-After, a closed port).

The pauses are recorded instead of slept (the policy's `sleep`), so the tests take no time and
show the schedule: what is repeated, after how long, and when libresh gives up."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from libresh_cli.errors import ExitCode, UnreachableError
from libresh_cli.kube.client import KubeApiError, KubeClient
from libresh_cli.kube.connection import Connection, KubeTarget
from libresh_cli.kube.retry import RetryPolicy


class Script:
    """What the server answers, one status per request (then 200), and what it was asked."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.retry_after: str | None = None
        self.seen: list[str] = []


class Handler(BaseHTTPRequestHandler):
    script: Script

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.script.seen.append(self.command)
        status = self.script.statuses.pop(0) if self.script.statuses else 200
        body = json.dumps(
            {"kind": "Status", "message": "busy", "code": status}
            if status >= 400
            else {"kind": "ConfigMap", "metadata": {"name": "x"}}
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status == 429 and self.script.retry_after is not None:
            self.send_header("Retry-After", self.script.retry_after)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()
    handler = type("Scripted", (Handler,), {"script": script})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    httpd.shutdown()
    httpd.server_close()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def _client(server: str, clock: Clock, budget: float = 120.0) -> KubeClient:
    connection = Connection(server, False, KubeTarget(), "test")
    policy = RetryPolicy(budget=budget, sleep=clock.sleep, clock=clock)
    return KubeClient(connection, retry=policy, timeout=5.0)


def test_a_restarting_server_is_waited_for(server: tuple[str, Script]) -> None:
    url, script = server
    clock = Clock()
    script.statuses = [503, 503, 500, 504]
    with _client(url, clock) as kube:
        found = kube.request("GET", "/api/v1/namespaces/a/configmaps/x")
    assert found["metadata"]["name"] == "x"
    assert script.seen == ["GET"] * 5
    assert len(clock.pauses) == 4
    assert clock.pauses[0] < clock.pauses[-1]  # the pause grows


def test_retries_stop_at_the_budget(server: tuple[str, Script]) -> None:
    url, script = server
    clock = Clock()
    script.statuses = [503] * 1000
    with _client(url, clock, budget=30.0) as kube, pytest.raises(KubeApiError) as raised:
        kube.request("GET", "/api/v1/namespaces/a/configmaps/x")
    assert raised.value.status == 503
    assert sum(clock.pauses) == pytest.approx(30.0, abs=0.01)
    assert len(script.seen) < 20


def test_a_post_is_not_repeated_after_the_server_may_have_acted(
    server: tuple[str, Script],
) -> None:
    url, script = server
    clock = Clock()
    script.statuses = [500]
    with _client(url, clock) as kube, pytest.raises(KubeApiError) as raised:
        kube.request("POST", "/api/v1/namespaces/a/configmaps", body={"a": 1})
    assert raised.value.status == 500
    assert script.seen == ["POST"]
    assert clock.pauses == []


def test_429_is_repeated_for_every_method_after_retry_after(
    server: tuple[str, Script],
) -> None:
    url, script = server
    clock = Clock()
    script.statuses, script.retry_after = [429, 429], "3"
    with _client(url, clock) as kube:
        kube.request("POST", "/api/v1/namespaces/a/configmaps", body={"a": 1})
    assert script.seen == ["POST"] * 3
    assert clock.pauses == [3.0, 3.0]


def test_a_server_never_reached_is_reported_at_once() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clock = Clock()
    with _client(f"http://127.0.0.1:{port}", clock) as kube, pytest.raises(UnreachableError) as e:
        kube.request("GET", "/version")
    assert e.value.exit_code == ExitCode.UNREACHABLE
    assert clock.pauses == []


def test_a_server_gone_after_answering_is_waited_for_then_reported(
    server: tuple[str, Script],
) -> None:
    """The server answered once, then its port closes (a restart that does not come back in
    time): requests are repeated within the budget, then the failure is reported."""
    url, _ = server
    clock = Clock()
    kube = _client(url, clock, budget=20.0)
    kube.request("GET", "/version")
    port = url.rsplit(":", 1)[1]
    kube._http.close()  # the same client, now towards a port nobody listens on
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    kube._http = httpx.Client(base_url=url.replace(port, str(closed)), timeout=5.0)
    with kube, pytest.raises(UnreachableError):
        kube.request("GET", "/version")
    assert clock.pauses and sum(clock.pauses) == pytest.approx(20.0, abs=0.01)
