"""The Vaultwarden MODEL image's rules (libresh_cli/lab/images/vaultwarden-model), run on this
machine: its /vaultwarden with a temporary directory as the /data volume, answering /alive and
writing SQLite as the image would. What each rule follows upstream is in that folder's
README.md.

"A model has teeth": the reason libresh's pre_backup hook exists must show here. A copy of
db.sqlite3 and then of db.sqlite3-wal, taken while the model writes (what a file-level backup
of the live volume does), is torn once SQLite checkpoints between the two; `/vaultwarden
backup`'s copy taken at the same moment is whole."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from libresh_cli.lab import imagebuild
from libresh_cli.lab.processes import free_ports

MODEL = Path(imagebuild.load_recipe("vaultwarden-model").folder)
PROGRAM = MODEL / "vaultwarden.py"
OLD, NEW = "1.34.1", "1.37.2"
WAL_HEADER = 32  # bytes (sqlite.org/fileformat2.html, "WAL File Format")


@dataclass
class Counts:
    """What the model's invariant compares: count(ciphers) and max(seq) against the counter
    row the same transactions update."""

    ciphers: int
    max_seq: int
    rows: int
    last_seq: int

    @property
    def consistent(self) -> bool:
        return self.ciphers == self.rows == self.max_seq == self.last_seq


def counts(conn: sqlite3.Connection) -> Counts:
    ciphers, max_seq = conn.execute(
        "SELECT count(*), coalesce(max(seq), 0) FROM ciphers"
    ).fetchone()
    rows, last_seq = conn.execute(
        "SELECT rows, last_seq FROM libresh_model_writes WHERE id = 1"
    ).fetchone()
    return Counts(ciphers, max_seq, rows, last_seq)


def read_live(database: Path) -> Counts:
    """One read transaction on the running model's database (a reader beside its writer)."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    try:
        conn.execute("BEGIN")
        return counts(conn)
    finally:
        conn.close()


def check_copy(path: Path) -> tuple[str, Counts | None]:
    """integrity_check's verdict on a copy, and its counts when they can be read."""
    conn = sqlite3.connect(path)
    try:
        verdict = "; ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
        return verdict, counts(conn)
    except sqlite3.DatabaseError as error:  # "database disk image is malformed", ...
        return f"error: {error}", None
    finally:
        conn.close()


def wal_salts(wal: Path) -> bytes:
    """The WAL header's two salts: they change each time SQLite restarts the WAL from its
    beginning, which it does only after a checkpoint copied every frame into db.sqlite3."""
    with wal.open("rb") as handle:
        return handle.read(WAL_HEADER)[16:24]


@dataclass
class Model:
    """The model's /vaultwarden on this machine, with `data` as its DATA_FOLDER."""

    data: Path
    version: str = NEW
    process: subprocess.Popen[str] | None = None
    port: int = 0

    @property
    def database(self) -> Path:
        return self.data / "db.sqlite3"

    def env(self, **more: str) -> dict[str, str]:
        return {
            "PATH": os.environ["PATH"],
            "DATA_FOLDER": str(self.data),
            "WEB_VAULT_FOLDER": str(MODEL / "web-vault"),
            "LIBRESH_MODEL_VERSION": self.version,
            "ROCKET_ADDRESS": "127.0.0.1",
            "ROCKET_PORT": str(self.port),
            **more,
        }

    def run(self, *args: str, **more: str) -> subprocess.CompletedProcess[str]:
        """/vaultwarden ARGS, to its end."""
        return subprocess.run(
            [sys.executable, str(PROGRAM), *args],
            env=self.env(**more),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def start(self, prefix: str = "", **more: str) -> None:
        """Start the server; back once /alive (under `prefix`, DOMAIN's path) answers 200."""
        (self.port,) = free_ports(1)
        self.process = subprocess.Popen(
            [sys.executable, str(PROGRAM)],
            env=self.env(**more),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while self.get("/alive", prefix)[0] != 200:
            assert self.process.poll() is None, self.process.communicate()[0]
            assert time.monotonic() < deadline, "the model did not answer /alive"
            time.sleep(0.1)

    def stop(self) -> str:
        """SIGTERM, as the kubelet stops a container: the model ends its writes and exits 0."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        output = self.process.communicate(timeout=30)[0]
        assert self.process.returncode == 0, output
        self.process = None
        return output

    def get(self, path: str, prefix: str = "") -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{self.port}{prefix}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, b""
        except OSError:
            return 0, b""

    def wait_for_rows(self, rows: int, timeout: float = 60) -> Counts:
        deadline = time.monotonic() + timeout
        while (now := read_live(self.database)).rows < rows:
            assert time.monotonic() < deadline, f"the writer wrote {now.rows} rows, not {rows}"
            time.sleep(0.1)
        return now


@pytest.fixture
def model(tmp_path: Path) -> Iterator[Model]:
    data = tmp_path / "data"
    data.mkdir()
    running = Model(data)
    yield running
    if running.process is not None:
        running.process.kill()
        running.process.communicate()


def test_first_start_makes_the_database_in_wal_mode_the_migrations_and_the_key(
    model: Model,
) -> None:
    model.start()
    status, body = model.get("/alive")
    assert status == 200
    assert json.loads(body).endswith("Z")  # a date, as upstream's now()
    assert model.get("/api/nothing")[0] == 404
    conn = sqlite3.connect(f"file:{model.database}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        versions = [r[0] for r in conn.execute("SELECT version FROM __diesel_schema_migrations")]
        assert versions == ["20180114171611", "20260309005927"]
        starts = conn.execute("SELECT version, last_seq FROM libresh_model_starts").fetchall()
        assert starts == [(NEW, 0)]
    finally:
        conn.close()
    assert (model.data / "rsa_key.pem").read_text().startswith("-----BEGIN RSA PRIVATE KEY")
    assert (model.data / "tmp").is_dir()
    model.wait_for_rows(20)
    output = model.stop()
    assert "Vaultwarden process exited!" in output
    # The last connection closed checkpointed the WAL away: the file alone is the database.
    assert not (model.data / "db.sqlite3-wal").exists()
    assert check_copy(model.database)[0] == "ok"


def test_the_data_folder_must_exist(tmp_path: Path) -> None:
    done = Model(tmp_path / "missing").run()
    assert done.returncode == 1
    assert f"Data folder '{tmp_path / 'missing'}' doesn't exist." in done.stdout
    assert not (tmp_path / "missing").exists()


def test_alive_is_under_the_path_of_domain(model: Model) -> None:
    """Rocket mounts every route under DOMAIN's path: a probe on /alive then gets 404. libresh
    renders DOMAIN as https://HOST (no path), so its readiness probe on /alive is right."""
    model.start("/vw", DOMAIN="https://vault.example.org/vw/")
    assert model.get("/alive", "/vw")[0] == 200
    assert model.get("/alive")[0] == 404


def test_the_writer_checkpoints_while_the_invariant_holds(model: Model) -> None:
    model.start()
    wal = model.data / "db.sqlite3-wal"
    model.wait_for_rows(10)
    first = wal_salts(wal)
    deadline = time.monotonic() + 60
    while wal_salts(wal) == first:
        assert time.monotonic() < deadline, "no checkpoint restarted the WAL within 60 s"
        time.sleep(0.05)
    assert read_live(model.database).consistent
    # The WAL is reused, not grown: SQLite's default autocheckpoint (1000 pages of 4 KiB).
    assert wal.stat().st_size < 5 * 1024 * 1024


def test_a_naive_copy_is_torn_where_vaultwarden_backup_is_whole(
    model: Model, tmp_path: Path
) -> None:
    """The copy a file-level backup of the live volume makes: db.sqlite3 first, the WAL some
    time later. Once SQLite has restarted its WAL twice in between, pages written after the
    first copy and checkpointed before the second are in neither file."""
    model.start()
    model.wait_for_rows(300)
    wal = model.data / "db.sqlite3-wal"
    naive = tmp_path / "naive"
    naive.mkdir()
    salts = wal_salts(wal)
    before = read_live(model.database)
    shutil.copyfile(model.database, naive / "db.sqlite3")
    backup = model.run("backup")  # the same moment, while the writer goes on
    after = read_live(model.database)
    restarts, deadline = 0, time.monotonic() + 90
    while restarts < 2:
        assert time.monotonic() < deadline, f"{restarts} WAL restarts within 90 s"
        if (now := wal_salts(wal)) != salts:
            salts, restarts = now, restarts + 1
        time.sleep(0.02)
    shutil.copyfile(wal, naive / "db.sqlite3-wal")
    model.stop()

    verdict, naive_counts = check_copy(naive / "db.sqlite3")
    print(f"the naive copy: {verdict[:200]}; {naive_counts}")
    torn = verdict != "ok" or naive_counts is None or not naive_counts.consistent
    assert torn, (verdict, naive_counts)

    assert backup.returncode == 0, backup.stdout + backup.stderr
    (line,) = backup.stdout.splitlines()
    copy = Path(line.removeprefix("Backup to '").removesuffix("' was successful"))
    assert line == f"Backup to '{copy}' was successful"
    assert copy.parent == model.data
    assert copy.name.startswith("db_") and len(copy.stem) == len("db_20261202_060000")
    verdict, copied = check_copy(copy)
    assert verdict == "ok"
    assert copied is not None and copied.consistent, copied
    assert before.last_seq <= copied.last_seq <= after.last_seq
    # A VACUUM INTO copy is one file, in rollback-journal mode: no WAL to go with it.
    conn = sqlite3.connect(copy)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    conn.close()


def test_backup_exit_codes_and_versions(tmp_path: Path) -> None:
    """1.37.2 opens the database read-only: none there, "Backup failed." and exit 1, nothing
    made. 1.34.1 goes through its pool, whose migrations make the database first."""
    data = tmp_path / "data"
    data.mkdir()
    failed = Model(data, NEW).run("backup")
    assert (failed.returncode, failed.stdout.split(" ", 2)[:2]) == (1, ["Backup", "failed."])
    assert list(data.iterdir()) == []
    made = Model(data, OLD).run("backup")
    assert made.returncode == 0, made.stdout + made.stderr
    assert made.stdout.startswith(f"Backup to '{data}/db_")
    assert (data / "db.sqlite3").exists()


def test_upgrade_migrates_and_an_older_binary_still_starts(model: Model) -> None:
    """Each start runs the binary's pending migrations; diesel does not look at migrations it
    does not know, so going back to 1.34.1 starts on 1.37.2's schema (upstream refuses no
    downgrade: it is unsupported, not prevented)."""
    model.version = OLD
    model.start()
    model.wait_for_rows(5)
    model.stop()
    model.version = NEW
    model.start()
    model.stop()
    model.version = OLD
    model.start()
    assert model.get("/alive")[0] == 200
    model.stop()
    conn = sqlite3.connect(model.database)
    try:
        starts = [r[0] for r in conn.execute("SELECT version FROM libresh_model_starts")]
        assert starts == [OLD, NEW, OLD]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "archives" in tables  # 1.37's migration, kept under 1.34.1
        assert counts(conn).consistent
    finally:
        conn.close()
