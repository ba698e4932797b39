"""Start the lab's daemons detached from libresh, find out whether they still run, stop them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from libresh_cli.errors import ConflictError


@dataclass(frozen=True)
class ProcessRecord:
    """A started daemon: its pid, and the executable and first argument it was started with,
    so that a pid reused by an unrelated program after a reboot is never taken for ours."""

    component: str
    pid: int
    executable: str
    log: str

    def to_dict(self) -> dict[str, str | int]:
        return {
            "component": self.component,
            "pid": self.pid,
            "executable": self.executable,
            "log": self.log,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ProcessRecord:
        return cls(
            str(data["component"]), int(str(data["pid"])), str(data["executable"]), str(data["log"])
        )


def start_daemon(
    component: str, argv: list[str], log: Path, env: Mapping[str, str]
) -> ProcessRecord:
    """Start `argv` in its own session (it outlives libresh and ignores the terminal's Ctrl-C),
    with output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
            close_fds=True,
        )
    # Kept, so that how it ended can still be read: a Popen object no longer referenced is
    # reaped by the next Popen of this process (subprocess._cleanup), its status lost.
    _STARTED[process.pid] = process
    return ProcessRecord(component, process.pid, argv[0], str(log))


_STARTED: dict[int, subprocess.Popen[bytes]] = {}


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The state letter follows the parenthesised command name, which may contain spaces.
    return stat.rsplit(")", 1)[1].split()[0]


def is_alive(record: ProcessRecord) -> bool:
    state = _proc_state(record.pid)
    if state is None or state in ("Z", "X"):
        return False
    try:
        cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and cmdline[0].decode(errors="replace") == record.executable


def reap(pid: int, wait: float = 0.0) -> str | None:
    """Collect our own exited children so they do not linger as zombies; how this one ended
    ("exit code 1", "killed by SIGKILL"), if it has (within `wait` seconds) and was ours to
    collect."""
    started = _STARTED.get(pid)
    if started is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = started.wait(wait) if wait else started.poll()
            if code is not None:
                del _STARTED[pid]
                return _how_it_ended(code)
        return None
    with contextlib.suppress(ChildProcessError):
        collected, status = os.waitpid(pid, os.WNOHANG)
        if collected == pid:
            return _how_it_ended(os.waitstatus_to_exitcode(status))
    return None


def _how_it_ended(code: int) -> str:
    """`code` as subprocess gives it: negative for the signal that killed the process."""
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


# SIGKILL cannot be ignored, but its delivery is not instantaneous.
KILL_SETTLE_SECONDS = 5.0


def stop_all(records: Iterable[ProcessRecord], *, grace: float = 10.0) -> list[str]:
    """SIGTERM every live daemon, SIGKILL those still there after `grace` seconds; returns
    once all are gone. Returns the components that had to be killed."""
    records = list(records)
    for record in records:
        reap(record.pid)  # ours that died already (start_daemon keeps them: not reaped else)
    alive = [r for r in records if is_alive(r)]
    for record in alive:
        _signal_group(record.pid, signal.SIGTERM)
    stubborn = _wait_gone(alive, grace)
    for record in stubborn:
        _signal_group(record.pid, signal.SIGKILL)
    _wait_gone(stubborn, KILL_SETTLE_SECONDS)
    return [r.component for r in stubborn]


def _wait_gone(records: list[ProcessRecord], timeout: float) -> list[ProcessRecord]:
    """Reap and poll until none of `records` is alive, or `timeout`; returns the survivors."""
    deadline = time.monotonic() + timeout
    while True:
        for record in records:
            reap(record.pid)
        records = [r for r in records if is_alive(r)]
        if not records or time.monotonic() >= deadline:
            return records
        time.sleep(0.05)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # Each daemon leads its own session and process group: signal the group so any child it
    # started goes too.
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int, host: str = "127.0.0.1", avoid: Iterable[int] = ()) -> list[int]:
    """Ports the kernel hands out as free now. They are held open together while chosen so
    they are distinct; a race with another program remains possible and shows as a clear
    start-up failure of the component that lost it."""
    sockets = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
            port = int(sock.getsockname()[1])
            if port not in avoid:
                ports.append(port)
    finally:
        for sock in sockets:
            sock.close()
    return ports


def require_free_port(port: int, what: str, how_to_change: str) -> None:
    if not port_is_free(port):
        raise ConflictError(
            f"Port {port} on 127.0.0.1, wanted for {what}, is already in use.",
            hint=how_to_change,
        )
