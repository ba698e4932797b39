"""The backup runner (bootstrap/backup-runner.sh) against a real PostgreSQL server and a real
restic repository, run the way a backup Job runs it: inputs in the environment and in mounted
directories, under dash and under busybox's sh (the shell of the Alpine image in the Job)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from libresh_cli.apps.record import HistoryEntry, InstanceRecord
from libresh_cli.backup.runner import decode_meta, parse_backups, parse_result, runner_script
from tests.integration.postgres import Postgres, running_postgres

BIG_FILE_SIZE = 210 * 1024 * 1024
DB_PASSWORD = "s3cret 'quoted'"


@pytest.fixture(autouse=True, scope="module")
def _restic_installed() -> None:
    if shutil.which("restic") is None:
        pytest.fail("restic is not installed: apt-get install restic (.ci/run installs it)")


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with running_postgres() as server:
        yield server


@dataclass
class Site:
    """One instance's data as a Job sees it: /data/VOLUME, /databases/NAME/uri, /meta."""

    root: Path
    database: str
    postgres: Postgres

    @property
    def volumes(self) -> Path:
        return self.root / "data"

    @property
    def files(self) -> Path:
        return self.volumes / "app-data"

    def sql(self, query: str) -> str:
        result = self.postgres.psql_tcp(self.database, DB_PASSWORD, self.database, query)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()


def create_database(server: Postgres, name: str) -> None:
    # Like the provisioning Job: the app's own role owns its database (and so its schema).
    password = DB_PASSWORD.replace("'", "''")
    for sql in (
        f"CREATE ROLE {name} LOGIN PASSWORD '{password}'",
        f"CREATE DATABASE {name} OWNER {name}",
    ):
        subprocess.run(
            [str(server.bindir / "psql"), "-v", "ON_ERROR_STOP=1", "-c", sql],
            env=server.admin_env(),
            check=True,
            capture_output=True,
        )


@pytest.fixture
def site(tmp_path: Path, postgres: Postgres, request: pytest.FixtureRequest) -> Site:
    name = "app_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:10]
    create_database(postgres, name)
    root = tmp_path / "site"
    password = quote(DB_PASSWORD, safe="")
    uri = f"postgresql://{name}:{password}@127.0.0.1:{postgres.port}/{name}?sslmode=disable"
    (root / "databases" / "postgres").mkdir(parents=True)
    (root / "databases" / "postgres" / "uri").write_text(uri)
    (root / "meta" / "record").mkdir(parents=True)
    record = InstanceRecord("demo", "demo", "1.0.0", {"domain": "d.example.org"}, ["api_key"], [])
    for n in range(100):  # a long history, as after years of nightly backups
        record.add_history(HistoryEntry("backup", None, "1.0.0", "ok", f"2026{n:04d} (scheduled)"))
    (root / "meta" / "record" / "record.json").write_text(
        record.to_configmap()["data"]["record.json"]
    )
    credentials = root / "meta" / "secrets" / "libresh-credentials"
    credentials.mkdir(parents=True)
    (credentials / "api_key").write_text("the-api-key")
    (credentials / "postgres_password").write_text(DB_PASSWORD)
    site = Site(root, name, postgres)
    site.files.mkdir(parents=True)
    return site


@pytest.fixture
def repository(tmp_path: Path) -> dict[str, str]:
    password_file = tmp_path / "repo-password"
    password_file.write_text("correct horse battery staple")
    password_file.chmod(0o600)
    return {"RESTIC_REPOSITORY": str(tmp_path / "repo"), "RESTIC_PASSWORD_FILE": str(password_file)}


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    result: dict[str, object]


def run_runner(
    site: Site,
    repository: dict[str, str],
    action: str,
    shell: tuple[str, ...] = ("dash",),
    **extra: str,
) -> Run:
    result_file = site.root / "result.json"
    result_file.unlink(missing_ok=True)
    env = {
        "PATH": f"{site.postgres.bindir}:{os.environ['PATH']}",
        "HOME": str(site.root),
        "TMPDIR": extra.pop("TMPDIR", str(site.root)),
        "RESTIC_CACHE_DIR": str(site.root / "cache"),
        "LIBRESH_ACTION": action,
        "LIBRESH_INSTANCE": "demo",
        "LIBRESH_APP": "demo",
        "LIBRESH_VERSION": "1.0.0",
        "LIBRESH_VOLUMES_DIR": str(site.volumes),
        "LIBRESH_VOLUMES": "app-data",
        "LIBRESH_DATABASES_DIR": str(site.root / "databases"),
        "LIBRESH_DATABASES": "postgres",
        "LIBRESH_META_DIR": str(site.root / "meta"),
        "LIBRESH_RESULT_FILE": str(result_file),
        **repository,
        **extra,
    }
    process = subprocess.run(
        [*shell, str(runner_script())],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    return Run(process.returncode, process.stdout, process.stderr, result)


def init(site: Site, repository: dict[str, str]) -> None:
    run = run_runner(site, repository, "init")
    assert run.returncode == 0, run.stderr
    assert run.result == {"ok": True}


def fill(site: Site, rows: int = 1000, big_file: bool = False) -> None:
    site.sql(
        "CREATE TABLE notes (id int PRIMARY KEY, body text, created timestamptz DEFAULT now());"  # noqa: S608 - rows is an int
        f"INSERT INTO notes SELECT g, repeat(md5(g::text), 6) FROM generate_series(1, {rows}) g;"
        "CREATE SCHEMA extra; CREATE TABLE extra.tags (name text);"
        "INSERT INTO extra.tags VALUES ('a'), ('b')"
    )
    (site.files / "config").mkdir()
    (site.files / "config" / "config.php").write_text("<?php $CONFIG = ['x' => 1];\n")
    (site.files / "config" / "config.php").chmod(0o640)
    (site.files / "users" / "ana" / "photos").mkdir(parents=True)
    (site.files / "users" / "ana" / "photos" / "cat.jpg").write_bytes(os.urandom(300_000))
    (site.files / "users" / "ana" / "link").symlink_to("photos/cat.jpg")
    if big_file:
        with (site.files / "users" / "ana" / "video.mkv").open("wb") as out:
            for _ in range(BIG_FILE_SIZE // (1 << 20)):
                out.write(os.urandom(1 << 20))


def database_checksum(site: Site) -> str:
    return site.sql(
        "SELECT md5(string_agg(n::text, ',' ORDER BY id)) FROM notes n"
        " UNION ALL SELECT string_agg(name, ',' ORDER BY name) FROM extra.tags"
        " UNION ALL SELECT string_agg(table_schema || '.' || table_name, ','"
        " ORDER BY table_schema, table_name)"
        " FROM information_schema.tables WHERE table_schema NOT IN"
        " ('pg_catalog', 'information_schema')"
    )


def tree_checksum(root: Path) -> dict[str, str]:
    """Every path below root with its type, mode and content hash (or link target)."""
    found = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        mode = oct(stat.S_IMODE(info.st_mode))
        if path.is_symlink():
            found[str(path.relative_to(root))] = f"link {path.readlink()}"
        elif path.is_dir():
            found[str(path.relative_to(root))] = f"dir {mode}"
        else:
            digest = hashlib.sha256()
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            found[str(path.relative_to(root))] = f"file {mode} {digest.hexdigest()}"
    return found


class PeakSize:
    """Samples the size of a directory while the runner runs: its largest size is the most
    temporary data the runner (pg_dump, restic, tar) wrote there at once."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _size(self) -> int:
        total = 0
        for path in self.directory.rglob("*"):
            try:
                total += path.lstat().st_size if path.is_file() else 0
            except FileNotFoundError:
                continue
        return total

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._size())

    def __enter__(self) -> PeakSize:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_backup_then_restore_brings_back_database_and_files_exactly(
    site: Site, repository: dict[str, str], tmp_path: Path
) -> None:
    init(site, repository)
    # ~90 MB of dump and a 210 MB file: neither may be copied to disk whole on the way.
    fill(site, rows=400_000, big_file=True)
    dump_size = int(site.sql("SELECT pg_total_relation_size('notes')"))
    assert dump_size > 80 * 1024 * 1024
    database_before, files_before = database_checksum(site), tree_checksum(site.files)
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    with PeakSize(scratch) as temporary:
        backup = run_runner(site, repository, "backup", TMPDIR=str(scratch))
    assert backup.returncode == 0, backup.stderr
    assert backup.result["ok"] is True
    assert int(str(backup.result["bytes"])) > BIG_FILE_SIZE + 80 * 1024 * 1024
    # restic keeps a few pack files (16 MiB each at most) in TMPDIR; never a whole dump or file.
    assert temporary.peak < 64 * 1024 * 1024, temporary.peak

    # What a failed upgrade might leave: changed rows, a new table, changed and new files.
    site.sql(
        "UPDATE notes SET body = 'lost' WHERE id % 7 = 0; DELETE FROM extra.tags;"
        "CREATE TABLE added_by_migration (x int)"
    )
    (site.files / "config" / "config.php").write_text("<?php broken")
    (site.files / "users" / "ana" / "photos" / "cat.jpg").unlink()
    (site.files / "users" / "ana" / "new.txt").write_text("after the backup")
    with (site.files / "users" / "ana" / "video.mkv").open("r+b") as f:
        f.write(b"corrupted")
    assert database_checksum(site) != database_before

    with PeakSize(scratch) as temporary:
        restore = run_runner(site, repository, "restore", TMPDIR=str(scratch))
    assert restore.returncode == 0, restore.stderr
    assert restore.result == {"ok": True, "backup": backup.result["backup"]}
    assert database_checksum(site) == database_before
    assert tree_checksum(site.files) == files_before
    assert temporary.peak < 64 * 1024 * 1024, temporary.peak


def test_runs_under_busybox_sh_as_in_the_alpine_image(
    site: Site, repository: dict[str, str]
) -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.fail("busybox is not installed: apt-get install busybox (.ci/run installs it)")
    shell = (busybox, "sh")
    assert run_runner(site, repository, "init", shell).returncode == 0
    fill(site)
    database_before, files_before = database_checksum(site), tree_checksum(site.files)
    backup = run_runner(site, repository, "backup", shell, LIBRESH_BACKUP_ID="first")
    assert backup.returncode == 0, backup.stderr
    site.sql("DROP TABLE notes")
    shutil.rmtree(site.files / "users")
    restore = run_runner(site, repository, "restore", shell)
    assert restore.returncode == 0, restore.stderr
    assert database_checksum(site) == database_before
    assert tree_checksum(site.files) == files_before
    listing = run_runner(site, repository, "snapshots", shell)
    assert [b.backup for b in parse_backups(str(listing.result["backups"]))] == ["first"]


def test_restore_picks_the_named_backup_and_the_newest_by_default(
    site: Site, repository: dict[str, str]
) -> None:
    init(site, repository)
    fill(site)
    for backup_id, text in (("one", "first"), ("two", "second")):
        (site.files / "state.txt").write_text(text)
        run = run_runner(
            site, repository, "backup", LIBRESH_BACKUP_ID=backup_id, LIBRESH_REASON="pre-upgrade"
        )
        assert run.returncode == 0, run.stderr
    listing = run_runner(site, repository, "snapshots")
    entries = parse_backups(str(listing.result["backups"]))
    assert [(e.backup, e.version, e.reason) for e in entries] == [
        ("one", "1.0.0", "pre-upgrade"),
        ("two", "1.0.0", "pre-upgrade"),
    ]
    assert parse_result(json.dumps(listing.result)) is not None

    assert run_runner(site, repository, "restore", LIBRESH_BACKUP_ID="one").returncode == 0
    assert (site.files / "state.txt").read_text() == "first"
    assert run_runner(site, repository, "restore").returncode == 0
    assert (site.files / "state.txt").read_text() == "second"


def test_a_backup_that_does_not_exist_is_refused_and_nothing_changes(
    site: Site, repository: dict[str, str]
) -> None:
    init(site, repository)
    fill(site)
    before = database_checksum(site), tree_checksum(site.files)
    run = run_runner(site, repository, "restore")
    assert (run.returncode, run.result["code"]) == (14, 14)
    assert "no complete backup of demo" in str(run.result["error"])
    assert run_runner(site, repository, "backup").returncode == 0
    run = run_runner(site, repository, "restore", LIBRESH_BACKUP_ID="20200101T000000Z")
    assert run.returncode == 14
    assert "no complete backup 20200101T000000Z" in str(run.result["error"])
    assert (database_checksum(site), tree_checksum(site.files)) == before


def test_wrong_password_is_named_and_nothing_changes(
    site: Site, repository: dict[str, str], tmp_path: Path
) -> None:
    init(site, repository)
    fill(site)
    assert run_runner(site, repository, "backup").returncode == 0
    site.sql("INSERT INTO extra.tags VALUES ('after')")
    before = database_checksum(site), tree_checksum(site.files)
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password")
    for action in ("backup", "restore", "snapshots"):
        run = run_runner(site, {**repository, "RESTIC_PASSWORD_FILE": str(wrong)}, action)
        assert run.returncode == 12, (action, run.stderr)
        assert "wrong repository password" in str(run.result["error"])
    assert (database_checksum(site), tree_checksum(site.files)) == before


def test_no_repository_is_never_created_by_a_backup(site: Site, tmp_path: Path) -> None:
    # A backup disk that is not mounted must not get a fresh repository in its mount point.
    repository = {"RESTIC_REPOSITORY": str(tmp_path / "unmounted"), "RESTIC_PASSWORD": "x"}
    fill(site)
    run = run_runner(site, repository, "backup")
    assert run.returncode == 10
    assert "no restic repository" in str(run.result["error"])
    assert not (tmp_path / "unmounted").exists()


def test_unreachable_storage_is_named(site: Site) -> None:
    repository = {
        "RESTIC_REPOSITORY": "s3:http://127.0.0.1:9/backups",
        "RESTIC_PASSWORD": "x",
        "AWS_ACCESS_KEY_ID": "id",
        "AWS_SECRET_ACCESS_KEY": "key",
    }
    run = run_runner(site, repository, "backup")
    assert run.returncode == 11
    assert "cannot be reached" in str(run.result["error"])
    assert "connection refused" in str(run.result["error"])
    assert "key" not in str(run.result["error"]).replace("backup", "")


def test_a_failing_database_dump_leaves_no_partial_backup(
    site: Site, repository: dict[str, str]
) -> None:
    init(site, repository)
    fill(site)
    uri = site.root / "databases" / "postgres" / "uri"
    uri.write_text(uri.read_text().replace("%27", "wrong"))
    run = run_runner(site, repository, "backup", LIBRESH_BACKUP_ID="broken")
    assert run.returncode == 15
    assert "pg_dump of postgres failed" in str(run.result["error"])
    snapshots = subprocess.run(
        ["restic", "snapshots", "--json"],
        env={**os.environ, **repository},
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(snapshots.stdout) in ([], None)  # the files part was forgotten again


def test_storage_full_is_named_and_leaves_no_complete_backup(
    site: Site, repository: dict[str, str], tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.fail("mounting a small tmpfs needs root (as in CI)")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(small)], check=True)
    try:
        full = {**repository, "RESTIC_REPOSITORY": str(small / "repo")}
        init(site, full)
        fill(site)
        # The disk the backups go to fills up. (Filled before the backup starts: restic 0.14,
        # Debian's, sometimes hangs when the space runs out in the middle of a pack.)
        subprocess.run(
            ["dd", "if=/dev/zero", f"of={small / 'filler'}", "bs=1M"], capture_output=True
        )
        before = database_checksum(site), tree_checksum(site.files)
        run = run_runner(site, full, "backup")
        assert run.returncode == 13, run.stderr
        assert "storage is full" in str(run.result["error"])
        restore = run_runner(site, full, "restore")
        assert restore.returncode == 14, restore.stderr  # there is no complete backup to use
        assert (database_checksum(site), tree_checksum(site.files)) == before
        (small / "filler").unlink()  # space again: the repository is still usable
        assert run_runner(site, full, "backup").returncode == 0
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def backups_after_keeping_one_a_day(site: Site, repository: dict[str, str]) -> list[str]:
    """Apply a retention of one daily backup (all of today's are one day), then list."""
    retention = {"LIBRESH_KEEP_DAILY": "1", "LIBRESH_KEEP_WEEKLY": "0", "LIBRESH_KEEP_MONTHLY": "0"}
    forget = run_runner(site, repository, "forget", **retention)
    assert forget.returncode == 0, forget.stderr
    listing = run_runner(site, repository, "snapshots")
    return [b.backup for b in parse_backups(str(listing.result["backups"]))]


def test_retention_keeps_whole_backups(site: Site, repository: dict[str, str]) -> None:
    init(site, repository)
    fill(site)
    for backup_id in ("a", "b", "c"):
        assert run_runner(site, repository, "backup", LIBRESH_BACKUP_ID=backup_id).returncode == 0
    assert backups_after_keeping_one_a_day(site, repository) == ["c"]
    # ...and the kept one is whole: it restores.
    site.sql("DROP TABLE notes")
    assert run_runner(site, repository, "restore").returncode == 0
    assert site.sql("SELECT count(*) FROM notes") == "1000"


def test_bad_input_is_named(site: Site, repository: dict[str, str]) -> None:
    run = run_runner(site, repository, "explode")
    assert run.returncode == 2
    assert "LIBRESH_ACTION must be" in str(run.result["error"])
    run = run_runner(site, repository, "backup", LIBRESH_VOLUMES="missing-volume")
    init(site, repository)
    run = run_runner(site, repository, "backup", LIBRESH_VOLUMES="missing-volume")
    assert run.returncode == 2
    assert "volume missing-volume is not mounted" in str(run.result["error"])


def test_meta_hands_the_record_and_credentials_over_encrypted(
    site: Site, repository: dict[str, str], tmp_path: Path
) -> None:
    init(site, repository)
    fill(site)
    assert run_runner(site, repository, "backup", LIBRESH_BACKUP_ID="b1").returncode == 0
    pad = os.urandom(2048)
    pad_file = tmp_path / "pad"
    pad_file.write_bytes(pad)
    run = run_runner(
        site, repository, "meta", LIBRESH_BACKUP_ID="b1", LIBRESH_PAD_FILE=str(pad_file)
    )
    assert run.returncode == 0, run.stderr
    sealed = str(run.result["meta"])
    assert "the-api-key" not in json.dumps(run.result)
    assert b"the-api-key".hex() not in sealed
    meta = decode_meta(sealed, pad)
    assert (meta.record["app"], meta.record["version"]) == ("demo", "1.0.0")
    assert meta.record["params"] == {"domain": "d.example.org"}
    assert "history" not in meta.record  # left out: the message holds 4 KiB at most
    assert meta.secrets == {
        "libresh-credentials": {"api_key": "the-api-key", "postgres_password": DB_PASSWORD}
    }
    with pytest.raises(ValueError, match="could not be read"):
        decode_meta(sealed, os.urandom(2048))

    missing = run_runner(
        site, repository, "meta", LIBRESH_BACKUP_ID="nope", LIBRESH_PAD_FILE=str(pad_file)
    )
    assert missing.returncode == 14, missing.stderr


def test_backups_are_tagged_with_the_version_in_the_record(
    site: Site, repository: dict[str, str]
) -> None:
    # A CronJob's environment is written when it is scheduled; the instance may have been
    # upgraded since. The mounted record is the truth.
    init(site, repository)
    record_file = site.root / "meta" / "record" / "record.json"
    record_file.write_text(
        record_file.read_text().replace('"version": "1.0.0"', '"version": "2.5.0"')
    )
    scheduled = run_runner(
        site, repository, "scheduled", LIBRESH_VERSION="1.0.0", LIBRESH_REASON="scheduled"
    )
    assert scheduled.returncode == 0, scheduled.stderr
    listing = run_runner(site, repository, "snapshots")
    (entry,) = parse_backups(str(listing.result["backups"]))
    assert (entry.version, entry.reason, entry.app) == ("2.5.0", "scheduled", "demo")


def test_an_app_without_volumes_backs_up_its_database_and_record(
    site: Site, repository: dict[str, str]
) -> None:
    init(site, repository)
    fill(site)
    for backup_id in ("x", "y"):
        run = run_runner(
            site, repository, "backup", LIBRESH_VOLUMES="", LIBRESH_BACKUP_ID=backup_id
        )
        assert run.returncode == 0, run.stderr
    # Same paths every time, so retention sees one series and keeps the newest.
    assert backups_after_keeping_one_a_day(site, repository) == ["y"]
    before = database_checksum(site)
    site.sql("DROP TABLE notes")
    assert run_runner(site, repository, "restore", LIBRESH_VOLUMES="").returncode == 0
    assert database_checksum(site) == before
