"""The machine's real-node lock (realnode.one_start_at_a_time): a stopping node holds it until
kube-proxy's chains are removed, so a lab starting meanwhile cannot have its chains removed
by the one stopping; the lock is re-entrant within a process (a start that fails stops its
node while holding it)."""

from __future__ import annotations

import fcntl
import threading
from pathlib import Path

import pytest

from libresh_cli.lab import nodeaddons, realnode


@pytest.fixture
def lock_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "real-node.lock"
    monkeypatch.setattr(realnode, "START_LOCK", path)
    return path


def held_by_someone(path: Path) -> bool:
    """Whether another holder has the lock: a second descriptor cannot take it."""
    with path.open("a") as other:
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(other, fcntl.LOCK_UN)
        return False


def test_chains_are_removed_while_the_lock_is_held(
    lock_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bool] = []
    monkeypatch.setattr(realnode, "running_kube_proxy", lambda: None)
    monkeypatch.setattr(nodeaddons, "remove_kube_chains", lambda: seen.append(held(lock_file)))
    # A node that never ran: nothing of it exists on the machine (no bridge, cgroup, mounts).
    layout = realnode.NodeLayout(tmp_path / "node", "lock-test", 250, 1, "/", 2, 3, 4)
    realnode.stop_node(layout, [], grace=0.1)
    assert seen == [True]
    assert not held_by_someone(lock_file), "released after the stop"


def held(path: Path) -> bool:
    # Checked from another thread's own descriptor: flock locks belong to open files.
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(held_by_someone(path)))
    thread.start()
    thread.join()
    return result[0]


def test_the_lock_is_reentrant_within_a_process(lock_file: Path) -> None:
    finished = threading.Event()

    def nested() -> None:
        with realnode.one_start_at_a_time(), realnode.one_start_at_a_time():
            assert held_by_someone(lock_file)
        finished.set()

    thread = threading.Thread(target=nested, daemon=True)
    thread.start()
    assert finished.wait(5), "a nested hold waited for itself"
    assert not held_by_someone(lock_file)
