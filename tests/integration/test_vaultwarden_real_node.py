"""Vaultwarden through libresh in real pods, with the Vaultwarden MODEL image
(libresh_cli/lab/images/vaultwarden-model: what it follows upstream and what it leaves out is
in its README) and a real volume (local-path) on the lab's real node. The model writes SQLite
all the time (a transaction every ~20 ms, each adding a cipher and bumping a counter), so every
backup here is taken while the database changes.

One installation: installed at 1.34.1 and Ready by libresh's readiness (/alive on 8080);
upgraded to 1.37.2 (a backup first, through the hooks, then the new binary's migrations);
backed up while it writes and restored over itself after it wrote more: the database running
again is whole (integrity_check), keeps the invariant, and holds what it held while the backup
ran: exactly what the pre_backup hook's copy held (read from the live volume while the backup
ran), not the live files the runner read after it, nor the live WAL replayed over the copy.

The live database is read from the volume's directory on this machine, through SQLite's backup
API on a read-only connection: the real node is this machine, so this reader shares the
container's kernel, its POSIX locks and the -shm memory map, as a second process beside the
server would; a plain file copy of the live files would be the torn copy the model's test shows
(tests/integration/test_vaultwarden_model.py)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from libresh_cli.lab import realnode
from tests.integration.conftest import Lab
from tests.integration.realpods import (
    drop_instances,
    instance_pod,
    ok,
    pod_log,
    run_libresh,
    volume_host_path,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a real node needs root")

OLD, NEW = "1.34.1", "1.37.2"
IMAGE = "docker.io/vaultwarden/server:{}"
PORT = 8080  # libresh's ROCKET_PORT (apps/vaultwarden/templates/vaultwarden.yaml)


def utc_text() -> str:
    """Now, as the model writes its times (UTC, text that sorts)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


@pytest.fixture(scope="module")
def vault(real_lab: Lab) -> Iterator[str]:
    """Vaultwarden installed at the older modelled version; libresh waited for it."""
    name = f"vw{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    output = ok(
        run_libresh(
            real_lab,
            "install",
            "vaultwarden",
            "--name",
            name,
            "--domain",
            f"{name}.example.org",
            "--version",
            OLD,
            "--yes",
        )
    )
    assert f"{name} is installed and healthy" in output
    print(f"install: {time.monotonic() - started:.0f} s")
    yield name
    drop_instances(real_lab, name)


@dataclass
class Snapshot:
    """A consistent copy of the live database, and what the tests read in it."""

    integrity: str
    ciphers: int
    max_seq: int
    rows: int
    last_seq: int
    starts: list[tuple[str, str, int]]  # (version, started_at, last_seq), oldest first
    migrations: list[str]
    path: Path

    @property
    def consistent(self) -> bool:
        return self.ciphers == self.rows == self.max_seq == self.last_seq


def snapshot(lab: Lab, name: str, into: Path) -> Snapshot:
    """The running instance's database, copied with SQLite's backup API (one step: one read
    transaction) from a read-only connection to the volume's file on this machine."""
    database = volume_host_path(lab, name, "vaultwarden-data") / "db.sqlite3"
    source = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    copy = sqlite3.connect(into)
    try:
        source.backup(copy)
    finally:
        source.close()
    try:
        integrity = "; ".join(row[0] for row in copy.execute("PRAGMA integrity_check"))
        ciphers, max_seq = copy.execute("SELECT count(*), max(seq) FROM ciphers").fetchone()
        rows, last_seq = copy.execute("SELECT rows, last_seq FROM libresh_model_writes").fetchone()
        starts = copy.execute(
            "SELECT version, started_at, last_seq FROM libresh_model_starts ORDER BY id"
        ).fetchall()
        migrations = [
            row[0]
            for row in copy.execute("SELECT version FROM __diesel_schema_migrations ORDER BY 1")
        ]
    finally:
        copy.close()
    return Snapshot(integrity, ciphers, max_seq, rows, last_seq, starts, migrations, into)


def wait_for_seq(lab: Lab, name: str, at_least: int, into: Path, timeout: float = 120) -> Snapshot:
    deadline = time.monotonic() + timeout
    while (now := snapshot(lab, name, into)).last_seq < at_least:
        assert time.monotonic() < deadline, f"{now.last_seq} writes, not {at_least}"
        time.sleep(1)
    return now


class CopyWatcher(threading.Thread):
    """Reads the pre_backup hook's copy while it is on the live volume (from the hook's `mv`
    until post_backup removes it): the sequence it holds. Nothing writes that file; it is
    copied away first, as post_backup may delete it any moment."""

    def __init__(self, data: Path, into: Path) -> None:
        super().__init__(name="copy-watcher", daemon=True)
        self.source = data / ".libresh-backup" / "db.sqlite3"
        self.into = into
        self.stop = threading.Event()
        self.last_seq: int | None = None

    def run(self) -> None:
        while not self.stop.is_set() and self.last_seq is None:
            try:
                shutil.copyfile(self.source, self.into)
                conn = sqlite3.connect(self.into)
                try:
                    row = conn.execute("SELECT last_seq FROM libresh_model_writes").fetchone()
                    self.last_seq = int(row[0])
                finally:
                    conn.close()
            except (OSError, sqlite3.Error):
                time.sleep(0.02)


def alive(lab: Lab, name: str) -> tuple[int, str]:
    """GET /alive from the Ready pod, over the node's bridge (the real node is this machine)."""
    pod = instance_pod(lab, name, "vaultwarden", timeout=120)
    url = f"http://{pod['status']['podIP']}:{PORT}/alive"
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, json.loads(response.read())


def running_image(lab: Lab, name: str) -> str:
    pod = instance_pod(lab, name, "vaultwarden", timeout=120)
    return str(pod["status"]["containerStatuses"][0]["image"])


def test_installed_and_ready_by_libresh_readiness(
    real_lab: Lab, vault: str, tmp_path: Path
) -> None:
    pod = instance_pod(real_lab, vault, "vaultwarden")
    assert pod["spec"]["nodeName"] == realnode.NODE_NAME
    assert running_image(real_lab, vault) == IMAGE.format(OLD)
    log = pod_log(real_lab, vault, pod["metadata"]["name"])
    assert f"standing for Vaultwarden {OLD}" in log
    assert f"Rocket has launched from http://0.0.0.0:{PORT}" in log
    status, now = alive(real_lab, vault)
    assert status == 200 and now.endswith("Z")
    data = volume_host_path(real_lab, vault, "vaultwarden-data")
    assert (data / "rsa_key.pem").read_text().startswith("-----BEGIN RSA PRIVATE KEY")
    assert (data / "db.sqlite3-wal").exists()  # ENABLE_DB_WAL's default
    found = wait_for_seq(real_lab, vault, 100, tmp_path / "copy.sqlite3")
    assert found.integrity == "ok" and found.consistent, found
    assert found.migrations == ["20180114171611"]  # 1.34.1's (the model's) migrations


def test_upgrade_to_the_newest_runs_its_migrations(
    real_lab: Lab, vault: str, real_storage: Path, tmp_path: Path
) -> None:
    before = snapshot(real_lab, vault, tmp_path / "before.sqlite3")
    started = time.monotonic()
    done = run_libresh(real_lab, "upgrade", vault, "--to", NEW, "--yes", "-o", "json")
    print(f"upgrade {OLD} -> {NEW}: {time.monotonic() - started:.0f} s")
    output = ok(done)
    steps = json.loads(done.stdout)
    assert [(s["result"], s["to"]) for s in steps] == [("upgraded", NEW)], output
    assert running_image(real_lab, vault) == IMAGE.format(NEW)
    assert alive(real_lab, vault)[0] == 200
    after = snapshot(real_lab, vault, tmp_path / "after.sqlite3")
    assert after.integrity == "ok" and after.consistent, after
    assert after.migrations == ["20180114171611", "20260309005927"]
    version, _, seq = after.starts[-1]
    assert version == NEW and seq >= before.last_seq
    # The upgrade's backup left nothing on the live volume (post_backup).
    data = volume_host_path(real_lab, vault, "vaultwarden-data")
    assert not (data / ".libresh-backup").exists()
    assert not list(data.glob("db_*.sqlite3"))


def test_a_backup_taken_while_it_writes_restores_whole(
    real_lab: Lab, vault: str, real_storage: Path, tmp_path: Path
) -> None:
    """`libresh backup now` while the model writes, more writes, then `libresh restore` over
    the instance: the database that runs again is the pre_backup hook's copy (the sequence
    it held, read while the backup ran), with no row of the later writes."""
    first = wait_for_seq(real_lab, vault, 500, tmp_path / "first.sqlite3")
    before = snapshot(real_lab, vault, tmp_path / "before.sqlite3").last_seq
    data = volume_host_path(real_lab, vault, "vaultwarden-data")
    watcher = CopyWatcher(data, tmp_path / "hook-copy.sqlite3")
    watcher.start()
    started = time.monotonic()
    done = run_libresh(real_lab, "backup", "now", vault, "-o", "json")
    print(f"backup: {time.monotonic() - started:.0f} s")
    watcher.stop.set()
    watcher.join()
    ok(done)
    taken = json.loads(done.stdout)
    after = snapshot(real_lab, vault, tmp_path / "after.sqlite3").last_seq
    print(
        f"writes: {first.last_seq} at first, {before} before the backup, {after} after it; "
        f"the hook's copy holds {watcher.last_seq}"
    )
    assert before < after  # the writer went on during the backup
    assert watcher.last_seq is not None, "the pre_backup hook's copy was never seen"
    assert before <= watcher.last_seq <= after
    wait_for_seq(real_lab, vault, after + 200, tmp_path / "later.sqlite3")

    restore_started = utc_text()
    started = time.monotonic()
    ok(run_libresh(real_lab, "restore", vault, "--backup", taken["backup"], "--no-backup", "--yes"))
    print(f"restore: {time.monotonic() - started:.0f} s")
    assert alive(real_lab, vault)[0] == 200
    restored = snapshot(real_lab, vault, tmp_path / "restored.sqlite3")
    assert restored.integrity == "ok", restored.integrity
    assert restored.consistent, restored
    # The first start after the restore says what the restored database held.
    since = [start for start in restored.starts if start[1] >= restore_started]
    assert since, restored.starts
    version, _, seq = since[0]
    print(f"restored at {seq} writes (window {before}..{after})")
    assert version == NEW
    # The hook's copy, not the live files the runner read seconds later.
    assert seq == watcher.last_seq
    # Every row past it was written after the restore: none came back from the live WAL.
    conn = sqlite3.connect(restored.path)
    try:
        (stale,) = conn.execute(
            "SELECT count(*) FROM ciphers WHERE seq > ? AND created_at < ?",
            (seq, restore_started),
        ).fetchone()
    finally:
        conn.close()
    assert stale == 0
    data = volume_host_path(real_lab, vault, "vaultwarden-data")  # the restored volume's
    assert not (data / ".libresh-backup").exists()
