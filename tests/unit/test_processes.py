"""Daemon handling with real processes: start detached, liveness (pid reuse), stop, ports."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from libresh_cli.errors import ConflictError
from libresh_cli.kube.client import wait_for
from libresh_cli.lab.processes import (
    ProcessRecord,
    free_ports,
    is_alive,
    port_is_free,
    require_free_port,
    start_daemon,
    stop_all,
)

SLEEP = shutil.which("sleep") or "/bin/sleep"


def test_start_check_and_stop_a_daemon(tmp_path: Path) -> None:
    record = start_daemon("sleeper", [SLEEP, "60"], tmp_path / "logs" / "s.log", {})
    # Seen alive within a moment (on a loaded machine /proc may lag the exec a little).
    wait_for("the sleeper", lambda: True if is_alive(record) else None, timeout=10)
    assert stop_all([record], grace=5) == []
    assert not is_alive(record)


def test_a_daemon_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    ready = tmp_path / "trap-set"
    stubborn = ["/bin/sh", "-c", f"trap '' TERM; touch {ready}; while :; do sleep 0.1; done"]
    record = start_daemon("stubborn", stubborn, tmp_path / "s.log", {"PATH": "/usr/bin:/bin"})
    wait_for("the trap", lambda: True if ready.exists() else None, timeout=10)
    assert is_alive(record)
    assert stop_all([record], grace=0.5) == ["stubborn"]
    assert not is_alive(record)


def test_a_reused_pid_is_not_taken_for_ours(tmp_path: Path) -> None:
    record = start_daemon("sleeper", [SLEEP, "60"], tmp_path / "s.log", {})
    impostor = ProcessRecord("sleeper", record.pid, "/usr/bin/something-else", record.log)
    try:
        assert not is_alive(impostor)
    finally:
        stop_all([record], grace=5)


def test_ports() -> None:
    ports = free_ports(3)
    assert len(set(ports)) == 3 and all(port_is_free(p) for p in ports)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        assert not port_is_free(taken)
        with pytest.raises(ConflictError, match=f"Port {taken} on 127.0.0.1") as raised:
            require_free_port(taken, "the API server", "Choose another with --api-port.")
        assert raised.value.hint == "Choose another with --api-port."
