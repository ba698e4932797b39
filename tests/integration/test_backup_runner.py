"""The backup runner (bootstrap/backup-runner.sh) against a real PostgreSQL server and a real
restic repository, run the way a backup Job runs it: inputs in the environment and in mounted
directories, under dash and under busybox's sh (the shell of the Alpine image in the Job)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from libresh_cli.apps.catalog import builtin_catalog, validate_app
from libresh_cli.apps.model import App
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
        "CREATE TABLE notes (id int PRIMARY KEY, body text, created timestamptz DEFAULT now());"
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


# --- The database's own role restores (PostgreSQL 13 to 17) -----------------------------------
#
# The app connects as a role libresh made: not a superuser, may not create roles, owner of its
# database. Nextcloud's installer, when its user may not create roles, keeps that user and
# makes its tables with it (nextcloud/server lib/private/Setup/PostgreSQL.php: the `oc_`
# role is only made by a user with CREATEROLE). The runner dumps and restores with the same
# role's uri (the Secret libresh-postgres).

NEXTCLOUD_LIKE_TABLES = (
    "CREATE TABLE oc_filecache (fileid BIGSERIAL PRIMARY KEY, path VARCHAR(4000),"
    " name VARCHAR(250), size BIGINT NOT NULL DEFAULT 0);"
    "CREATE INDEX fs_name_hash ON oc_filecache (name);"
    "CREATE TABLE oc_appconfig (appid VARCHAR(32) NOT NULL, configkey VARCHAR(64) NOT NULL,"
    " configvalue TEXT, PRIMARY KEY (appid, configkey));"
    "CREATE VIEW oc_big_files AS SELECT fileid, path FROM oc_filecache WHERE size > 1000;"
    "INSERT INTO oc_filecache (path, name, size) SELECT 'files/' || g, 'f' || g, g * 10"
    " FROM generate_series(1, 500) g;"
    "INSERT INTO oc_appconfig VALUES ('core', 'installedat', '1700000000'),"
    " ('core', 'vendor', 'nextcloud')"
)


def pre_15_public_schema(server: Postgres, database: str) -> None:
    """`public` as PostgreSQL 13 and 14 make it, and as clusters upgraded from them keep it
    (PostgreSQL 15 release notes: upgrades "preserve public's existing ownership"): owned by
    the bootstrap superuser, anyone may create in it."""
    server.admin_sql(
        "ALTER SCHEMA public OWNER TO postgres; GRANT CREATE ON SCHEMA public TO PUBLIC;",
        database,
    )


def objects_and_owners(site: Site) -> dict[str, str]:
    rows = site.postgres.admin_sql(
        "SELECT c.relkind::text || ' ' || n.nspname || '.' || c.relname,"
        " pg_get_userbyid(c.relowner)"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'"
        " UNION ALL SELECT 'schema ' || nspname, pg_get_userbyid(nspowner) FROM pg_namespace"
        " WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'",
        site.database,
    )
    return dict(line.split("|") for line in rows.splitlines())


def uses_its_tables(site: Site) -> None:
    """The app reads and writes everything, as Nextcloud does (sequences included)."""
    site.sql(
        "INSERT INTO oc_filecache (path, name) VALUES ('files/new', 'new');"
        "UPDATE oc_appconfig SET configvalue = 'x' WHERE configkey = 'vendor';"
        "DELETE FROM oc_filecache WHERE path = 'files/new';"
        "UPDATE oc_appconfig SET configvalue = 'nextcloud' WHERE configkey = 'vendor';"
        "SELECT count(*) FROM oc_big_files"
    )


def clone_site(site: Site, name: str) -> Site:
    """Another instance's database, owned by its own role, as `restore --as` makes it."""
    create_database(site.postgres, name)
    root = site.root.parent / name
    (root / "databases" / "postgres").mkdir(parents=True)
    uri = (site.root / "databases" / "postgres" / "uri").read_text()
    (root / "databases" / "postgres" / "uri").write_text(uri.replace(site.database, name))
    clone = Site(root, name, site.postgres)
    clone.files.mkdir(parents=True)
    return clone


@pytest.mark.parametrize("public_schema", ["pg15-and-later", "pg13-and-14"])
def test_the_apps_own_role_restores_and_owns_everything(
    site: Site, repository: dict[str, str], public_schema: str
) -> None:
    if public_schema == "pg13-and-14":
        pre_15_public_schema(site.postgres, site.database)
    assert (
        site.sql("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")
        == "f"
    )
    site.sql(NEXTCLOUD_LIKE_TABLES)
    init(site, repository)
    before = site.sql("SELECT md5(string_agg(f::text, ',' ORDER BY fileid)) FROM oc_filecache f")
    owners_before = objects_and_owners(site)
    assert owners_before.pop("schema public") in ("pg_database_owner", "postgres")
    assert set(owners_before.values()) == {site.database}
    assert run_runner(site, repository, "backup", LIBRESH_BACKUP_ID="b1").returncode == 0

    # What a failed upgrade leaves: changed rows, a new table.
    site.sql("UPDATE oc_filecache SET size = 0; CREATE TABLE oc_added_by_upgrade (x int)")
    for _ in range(2):  # and a restore again onto a restored database
        restore = run_runner(site, repository, "restore", LIBRESH_BACKUP_ID="b1")
        assert restore.returncode == 0, restore.stderr
        assert site.sql("SELECT to_regclass('oc_added_by_upgrade')") == ""
        assert (
            site.sql("SELECT md5(string_agg(f::text, ',' ORDER BY fileid)) FROM oc_filecache f")
            == before
        )
        owners = objects_and_owners(site)
        # Every restored table, index, sequence and view belongs to the app's role. `public`
        # stays the bootstrap superuser's where it was (13, 14); on 15+ the role drops and
        # makes it again.
        assert {k: v for k, v in owners.items() if k != "schema public"} == owners_before
        expected_public = "postgres" if public_schema == "pg13-and-14" else site.database
        assert owners["schema public"] == expected_public
        uses_its_tables(site)


@pytest.mark.parametrize("public_schema", ["pg15-and-later", "pg13-and-14"])
def test_a_clone_restores_into_a_database_its_own_role_owns(
    site: Site, repository: dict[str, str], public_schema: str
) -> None:
    site.sql(NEXTCLOUD_LIKE_TABLES)
    init(site, repository)
    assert run_runner(site, repository, "backup", LIBRESH_BACKUP_ID="b1").returncode == 0
    clone = clone_site(site, site.database + "_clone")
    if public_schema == "pg13-and-14":
        pre_15_public_schema(site.postgres, clone.database)
    # The runner of `restore --as`: the source's backup, the clone's connection.
    restore = run_runner(clone, repository, "restore", LIBRESH_BACKUP_ID="b1")
    assert restore.returncode == 0, restore.stderr
    owners = objects_and_owners(clone)
    assert {v for k, v in owners.items() if k != "schema public"} == {clone.database}
    assert clone.sql("SELECT count(*) FROM oc_filecache") == "500"
    uses_its_tables(clone)
    # Nothing in the clone is the source's role's.
    crossing = site.postgres.psql_tcp(
        site.database, DB_PASSWORD, clone.database, "SELECT count(*) FROM public.oc_filecache"
    )
    assert crossing.returncode != 0 and "permission denied" in crossing.stderr


def test_objects_the_role_cannot_drop_stop_the_restore_by_name(
    site: Site, repository: dict[str, str]
) -> None:
    # On 13 and 14 `public` is not the role's to drop: a table another role made there (an
    # `oc_admin`-style role of an old install) would survive the restore or break it.
    pre_15_public_schema(site.postgres, site.database)
    site.sql(NEXTCLOUD_LIKE_TABLES)
    init(site, repository)
    assert run_runner(site, repository, "backup").returncode == 0
    site.postgres.admin_sql(
        "CREATE ROLE oc_admin; CREATE TABLE public.oc_leftover (x int);"
        " ALTER TABLE public.oc_leftover OWNER TO oc_admin;",
        site.database,
    )
    site.sql("DELETE FROM oc_appconfig")
    restore = run_runner(site, repository, "restore")
    assert restore.returncode == 15
    error = str(restore.result["error"])
    assert "nothing was changed" in error
    assert "public.oc_leftover (owner oc_admin)" in error
    assert site.sql("SELECT count(*) FROM oc_appconfig") == "0"  # rolled back, as it was


def test_a_server_newer_than_pg_dump_is_refused_before_anything_is_stored(
    site: Site, repository: dict[str, str], tmp_path: Path
) -> None:
    # pg_dump refuses servers of a newer major than its own. The runner compares the server's
    # server_version_num with `pg_dump --version` first; here a pg_dump one major older than
    # the server (the real one, reporting an older version).
    init(site, repository)
    fill(site)
    older = site.postgres.major - 1
    fake = tmp_path / "older-client"
    fake.mkdir()
    (fake / "pg_dump").write_text(
        "#!/bin/sh\n"
        f'[ "$1" = --version ] && {{ echo "pg_dump (PostgreSQL) {older}.9"; exit 0; }}\n'
        f'exec {site.postgres.bindir / "pg_dump"} "$@"\n'
    )
    (fake / "pg_dump").chmod(0o755)
    run = run_runner(
        site, repository, "backup", PATH=f"{fake}:{site.postgres.bindir}:{os.environ['PATH']}"
    )
    assert run.returncode == 15, run.stderr
    error = str(run.result["error"])
    assert f"runs PostgreSQL {site.postgres.major}, newer than" in error
    assert f"pg_dump {older}" in error
    snapshots = subprocess.run(
        ["restic", "snapshots", "--json"],
        env={**os.environ, **repository},
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(snapshots.stdout) in ([], None)


# --- Vaultwarden: a consistent copy of its SQLite database --------------------------------------
#
# The app's hooks (apps/vaultwarden/app.yaml) run as written, under sh, on a real SQLite
# database in WAL mode that a connection keeps writing to (the running Vaultwarden), with the
# real runner and restic in between. `/vaultwarden backup` cannot run here: a model stands in.

VAULTWARDEN_BACKUP_MODEL = """\
# A MODEL of `/vaultwarden backup` (dani-garcia/vaultwarden src/main.rs, src/db/mod.rs
# backup_sqlite): opens $DATA_FOLDER/db.sqlite3 read-only, VACUUM INTO db_<UTC>.sqlite3 beside
# it, prints "Backup to '<file>' was successful"; exit 1 when it fails.
import datetime, os, sqlite3, sys
folder = os.environ.get("DATA_FOLDER", "data")
stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d_%H%M%S")
target = os.path.join(folder, f"db_{stamp}.sqlite3")
try:
    db = sqlite3.connect(f"file:{os.path.join(folder, 'db.sqlite3')}?mode=ro", uri=True)
    db.execute("VACUUM INTO ?", (target,))
except sqlite3.Error as error:
    print(f"Backup failed. {error!r}")
    sys.exit(1)
print(f"Backup to '{target}' was successful")
"""


@pytest.fixture
def vaultwarden() -> App:
    return validate_app(builtin_catalog() / "vaultwarden")


def run_hook(app: App, phase: str, data: Path, model: Path) -> subprocess.CompletedProcess[str]:
    (step,) = app.hooks[phase]
    command = [arg.replace("/vaultwarden backup", f"{model} backup") for arg in step.command]
    done = subprocess.run(
        command,
        env={"PATH": os.environ["PATH"], "DATA_FOLDER": str(data)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, (phase, done.stdout, done.stderr)
    return done


@pytest.fixture
def vaultwarden_model(tmp_path: Path) -> Path:
    model = tmp_path / "vaultwarden-model"
    model.write_text(f"#!{sys.executable}\n{VAULTWARDEN_BACKUP_MODEL}")
    model.chmod(0o755)
    return model


def running_vaultwarden(data: Path) -> sqlite3.Connection:
    """The app's connection: WAL mode (Vaultwarden's default, ENABLE_DB_WAL), no automatic
    checkpoint, so committed rows stay in db.sqlite3-wal while it runs."""
    db = sqlite3.connect(data / "db.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=wal")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("CREATE TABLE IF NOT EXISTS ciphers (id INTEGER PRIMARY KEY, data TEXT)")
    return db


def add_ciphers(db: sqlite3.Connection, count: int) -> None:
    db.executemany("INSERT INTO ciphers (data) VALUES (?)", [("x" * 200,)] * count)


def restored_ciphers(data: Path) -> tuple[int, str]:
    db = sqlite3.connect(data / "db.sqlite3")
    try:
        count = db.execute("SELECT count(*) FROM ciphers").fetchone()[0]
        return count, db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def vaultwarden_run(site: Site, repository: dict[str, str], action: str) -> Run:
    run = run_runner(site, repository, action, LIBRESH_DATABASES="", LIBRESH_BACKUP_ID="vw")
    assert run.returncode == 0, run.stderr
    return run


def test_vaultwarden_backups_restore_the_consistent_copy_without_the_stale_wal(
    site: Site, repository: dict[str, str], vaultwarden: App, vaultwarden_model: Path
) -> None:
    data = site.files
    init(site, repository)
    app = running_vaultwarden(data)
    add_ciphers(app, 300)
    run_hook(vaultwarden, "pre_backup", data, vaultwarden_model)
    copy = data / ".libresh-backup" / "db.sqlite3"
    assert copy.is_file() and not list(data.glob("db_*.sqlite3"))
    add_ciphers(app, 7)  # written while the backup runs: in the WAL, not in the copy
    assert (data / "db.sqlite3-wal").stat().st_size > 0
    vaultwarden_run(site, repository, "backup")
    run_hook(vaultwarden, "post_backup", data, vaultwarden_model)
    assert not (data / ".libresh-backup").exists()  # the live volume keeps no copy
    add_ciphers(app, 50)
    app.close()  # Vaultwarden stopped for the restore

    vaultwarden_run(site, repository, "restore")
    assert (data / "db.sqlite3-wal").exists() and copy.exists()  # the files as copied
    done = run_hook(vaultwarden, "post_restore", data, vaultwarden_model)
    assert "consistent copy" in done.stdout
    # The copy, whole: not the WAL's later rows (a stale WAL over a copied database is what
    # the wiki warns against), and nothing of the helper directory left.
    assert restored_ciphers(data) == (300, "ok")
    assert not (data / "db.sqlite3-wal").exists() and not (data / "db.sqlite3-shm").exists()
    assert not (data / ".libresh-backup").exists()


def test_vaultwarden_keeps_its_files_when_the_backup_holds_a_stale_copy(
    site: Site, repository: dict[str, str], vaultwarden: App, vaultwarden_model: Path
) -> None:
    # A backup whose post_backup never ran left its copy; a later backup without hooks (the
    # schedule) took it along with newer database files.
    data = site.files
    init(site, repository)
    app = running_vaultwarden(data)
    add_ciphers(app, 10)
    run_hook(vaultwarden, "pre_backup", data, vaultwarden_model)
    copy = data / ".libresh-backup" / "db.sqlite3"
    day_ago = copy.stat().st_mtime - 24 * 3600
    os.utime(copy, (day_ago, day_ago))
    add_ciphers(app, 5)
    app.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    app.close()
    vaultwarden_run(site, repository, "backup")
    vaultwarden_run(site, repository, "restore")
    done = run_hook(vaultwarden, "post_restore", data, vaultwarden_model)
    assert "keeping the files" in done.stdout
    assert restored_ciphers(data) == (15, "ok")
    assert not (data / ".libresh-backup").exists()


def test_vaultwarden_restores_a_backup_without_a_copy_as_it_was_taken(
    site: Site, repository: dict[str, str], vaultwarden: App, vaultwarden_model: Path
) -> None:
    data = site.files
    init(site, repository)
    app = running_vaultwarden(data)
    add_ciphers(app, 4)
    app.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    app.close()
    vaultwarden_run(site, repository, "backup")
    vaultwarden_run(site, repository, "restore")
    done = run_hook(vaultwarden, "post_restore", data, vaultwarden_model)
    assert "no consistent copy" in done.stdout
    assert restored_ciphers(data) == (4, "ok")


def test_instances_whose_app_user_is_the_bootstrap_superuser_still_restore(
    site: Site, repository: dict[str, str]
) -> None:
    # Embedded databases made before the app had a role of its own: the app's user is the
    # image's POSTGRES_USER, the bootstrap superuser, whose objects DROP OWNED may not drop
    # ("required by the database system"): it drops every schema instead.
    site.postgres.admin_sql("ALTER ROLE postgres PASSWORD 'bootstrap'")
    uri = site.root / "databases" / "postgres" / "uri"
    uri.write_text(
        f"postgresql://postgres:bootstrap@127.0.0.1:{site.postgres.port}/{site.database}"
        "?sslmode=disable"
    )
    site.postgres.admin_sql("CREATE TABLE kept (x int); INSERT INTO kept VALUES (1)", site.database)
    init(site, repository)
    assert run_runner(site, repository, "backup").returncode == 0
    site.postgres.admin_sql("DELETE FROM kept; CREATE TABLE added (y int)", site.database)
    restore = run_runner(site, repository, "restore")
    assert restore.returncode == 0, restore.stderr
    assert site.postgres.admin_sql(
        "SELECT count(*) FROM kept; SELECT to_regclass('added') IS NULL", site.database
    ).split() == ["1", "t"]


# --- No password on the node's process table; Secrets gone when the Job is killed -------------
#
# argv (/proc/PID/cmdline) is readable by every user of the node, the environment only by the
# process's owner and root. The runner connects through libpq's environment, stages the
# record and Secrets in memory (the Job's volumes: test_backup_pure.py) and removes them when
# it is stopped (SIGTERM: the Job deleted or past its deadline).

PASSWORD_FORMS = (DB_PASSWORD, quote(DB_PASSWORD, safe=""), quote(DB_PASSWORD))


def slow_wrapper(directory: Path, name: str, target: str, when: str = "*") -> Path:
    """`name` on PATH: sleeps 1.5 s (while its arguments match `when`), writing its pid to
    directory/name.started, then runs `target`."""
    directory.mkdir(exist_ok=True)
    wrapper = directory / name
    wrapper.write_text(
        "#!/bin/sh\n"
        f'case "$*" in {when}) echo $$ >"{directory}/{name}.started"; sleep 1.5 ;; esac\n'
        f'exec {target} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


class CommandLines:
    """Samples every process's command line while the runner runs."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    self.seen.add(
                        cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    )
                except OSError:
                    continue

    def __enter__(self) -> CommandLines:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_pg_dump_and_psql_never_get_the_password_on_their_command_line(
    site: Site, repository: dict[str, str], tmp_path: Path
) -> None:
    init(site, repository)
    fill(site)
    bindir = site.postgres.bindir
    wrappers = tmp_path / "wrappers"
    slow_wrapper(wrappers, "pg_dump", str(bindir / "pg_dump"), "--no-owner*")
    slow_wrapper(wrappers, "psql", str(bindir / "psql"), "--quiet*")
    path = f"{wrappers}:{bindir}:{os.environ['PATH']}"
    with CommandLines() as processes:
        backup = run_runner(site, repository, "backup", PATH=path)
        assert backup.returncode == 0, backup.stderr
        site.sql("DELETE FROM extra.tags")
        restore = run_runner(site, repository, "restore", PATH=path)
        assert restore.returncode == 0, restore.stderr
    assert site.sql("SELECT count(*) FROM extra.tags") == "2"
    # The slow steps were seen running, with their arguments...
    assert any(" --no-owner --no-privileges" in line for line in processes.seen)
    assert any(" --quiet --no-psqlrc" in line for line in processes.seen)
    # ...and no command line ever held the password, plain or as in the uri.
    leaks = [line for line in processes.seen if any(form in line for form in PASSWORD_FORMS)]
    assert leaks == []


def test_the_secrets_own_keys_are_used_and_sslmode_comes_from_the_uri(
    site: Site, repository: dict[str, str]
) -> None:
    # The Secret libresh writes: host, port, database, username, password and uri. The keys
    # are what the runner uses (here the uri's password is wrong); the uri gives sslmode.
    init(site, repository)
    fill(site)
    connection = site.root / "databases" / "postgres"
    uri = (connection / "uri").read_text()
    for key, value in (
        ("host", "127.0.0.1"),
        ("port", str(site.postgres.port)),
        ("database", site.database),
        ("username", site.database),
        ("password", DB_PASSWORD),
    ):
        (connection / key).write_text(value)
    (connection / "uri").write_text(uri.replace("%27", "wrong"))
    assert run_runner(site, repository, "backup").returncode == 0
    site.sql("DELETE FROM extra.tags")
    restore = run_runner(site, repository, "restore")
    assert restore.returncode == 0, restore.stderr
    assert site.sql("SELECT count(*) FROM extra.tags") == "2"
    # sslmode=require against a server without TLS: refused, so it was passed on.
    (connection / "uri").write_text(uri.replace("sslmode=disable", "sslmode=require"))
    run = run_runner(site, repository, "backup")
    assert run.returncode == 15, run.stderr
    assert "SSL" in str(run.result["error"])


def runner_processes_gone(pid: int) -> bool:
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("shell", ["dash", "busybox"])
@pytest.mark.parametrize("stopped_while", ["dumping", "storing-files"])
def test_sigterm_removes_the_staged_secrets_and_fails(
    site: Site, repository: dict[str, str], tmp_path: Path, shell: str, stopped_while: str
) -> None:
    init(site, repository)
    fill(site)
    command = ("dash",) if shell == "dash" else (str(shutil.which("busybox")), "sh")
    wrappers = tmp_path / "wrappers"
    if stopped_while == "dumping":
        slow = "pg_dump"
        slow_wrapper(wrappers, slow, str(site.postgres.bindir / "pg_dump"), "--no-owner*")
    else:  # the record and Secrets are staged beside the volumes
        slow = "restic"
        slow_wrapper(wrappers, slow, str(shutil.which("restic")), "*complete*")
    (wrappers / f"{slow}.started").unlink(missing_ok=True)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result_file = site.root / "result.json"
    env = {
        "PATH": f"{wrappers}:{site.postgres.bindir}:{os.environ['PATH']}",
        "HOME": str(site.root),
        "TMPDIR": str(scratch),
        "RESTIC_CACHE_DIR": str(site.root / "cache"),
        "LIBRESH_ACTION": "backup",
        "LIBRESH_INSTANCE": "demo",
        "LIBRESH_VOLUMES_DIR": str(site.volumes),
        "LIBRESH_VOLUMES": "app-data",
        "LIBRESH_DATABASES_DIR": str(site.root / "databases"),
        "LIBRESH_DATABASES": "postgres",
        "LIBRESH_META_DIR": str(site.root / "meta"),
        "LIBRESH_RESULT_FILE": str(result_file),
        **repository,
    }
    runner = subprocess.Popen(
        [*command, str(runner_script())],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        started = wrappers / f"{slow}.started"
        for _ in range(300):
            if started.exists() and started.read_text().strip():
                break
            assert runner.poll() is None, runner.communicate()[1]
            threading.Event().wait(0.02)
        else:
            pytest.fail(f"{slow} never started")
        slow_pid = int(started.read_text())
        stage = site.volumes / ".libresh-meta"
        (work,) = scratch.glob("libresh-runner.*")
        if stopped_while == "storing-files":
            assert (stage / "secrets" / "libresh-credentials" / "api_key").exists()
            assert stat.S_IMODE(stage.stat().st_mode) == 0o700
        runner.send_signal(15)
        _, stderr = runner.communicate(timeout=20)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 143, stderr
    assert "stopped by SIGTERM" in stderr
    assert json.loads(result_file.read_text()) == {
        "ok": False,
        "code": 143,
        "error": "stopped by SIGTERM",
    }
    assert not stage.exists() and not work.exists()
    assert list(scratch.iterdir()) == []
    assert runner_processes_gone(slow_pid)  # what it ran was stopped too


# -- one repository per instance (issue 14, findings 1 and 8) ---------------------------------


def test_an_instances_repository_is_made_on_first_use_once_the_storage_is_there(
    site: Site, tmp_path: Path
) -> None:
    storage = tmp_path / "storage"  # the node path, as libresh-system's runner sees it
    check = {"RESTIC_REPOSITORY": str(storage / "libresh-system"), "RESTIC_PASSWORD": "k-check"}
    own = {"RESTIC_REPOSITORY": str(storage / "demo"), "RESTIC_PASSWORD": "k-demo"}
    first_use = {"LIBRESH_STORAGE_CHECK": str(storage / "libresh-system")}
    # The storage was never set up, or its disk is not mounted: nothing is made.
    run = run_runner(site, own, "init", **first_use)
    assert run.returncode == 10, run.stderr
    assert "backup storage is not there" in str(run.result["error"])
    assert not storage.exists()
    # `backup storage set` makes the storage's own repository; then the instance's is made,
    # and found the next time.
    assert run_runner(site, check, "init").returncode == 0
    made = run_runner(site, own, "init", **first_use)
    assert made.returncode == 0 and "creating the restic repository" in made.stderr, made.stderr
    again = run_runner(site, own, "init", **first_use)
    assert again.returncode == 0 and "exists already" in again.stderr, again.stderr
    # Its own key, not the storage's: another key is a wrong password, never a new repository.
    wrong = run_runner(site, {**own, "RESTIC_PASSWORD": "k-check"}, "init", **first_use)
    assert wrong.returncode == 12, wrong.stderr
    fill(site)
    assert run_runner(site, own, "backup").returncode == 0
    listing = run_runner(site, check, "snapshots")
    assert listing.returncode == 0 and listing.result["backups"] == ""


def test_a_runner_works_only_on_the_instance_whose_repository_it_was_given(
    site: Site, repository: dict[str, str]
) -> None:
    init(site, repository)
    fill(site)
    own = {**repository, "LIBRESH_REPOSITORY_OF": "demo"}
    assert run_runner(site, own, "backup", LIBRESH_BACKUP_ID="b1").returncode == 0
    # Backups tagged for another instance are never read through this repository.
    for action in ("restore", "snapshots", "backup", "forget"):
        run = run_runner(site, own, action, LIBRESH_INSTANCE="other", LIBRESH_BACKUP_ID="b1")
        assert run.returncode == 2, (action, run.stderr)
        assert "the repository of demo holds no backups of other" in str(run.result["error"])
    assert run_runner(site, own, "restore", LIBRESH_BACKUP_ID="b1").returncode == 0


@contextmanager
def locked(repository: dict[str, str], tmp_path: Path) -> Iterator[None]:
    """The repository locked by another restic run (a backup reading from a pipe that stays
    open), as while the instance's schedule runs."""
    env = {**os.environ, **repository, "RESTIC_CACHE_DIR": str(tmp_path / "other-cache")}
    holder = subprocess.Popen(
        ["restic", "backup", "--stdin", "--stdin-filename", "held"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        assert holder.stdin is not None
        deadline = time.monotonic() + 30
        while not any((Path(repository["RESTIC_REPOSITORY"]) / "locks").iterdir()):
            assert time.monotonic() < deadline, "restic took no lock"
            time.sleep(0.1)
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()  # the other run ends, and so does its lock
        holder.wait(timeout=60)


def test_a_locked_repository_is_named_as_such_not_as_failed_files(
    site: Site, repository: dict[str, str], tmp_path: Path
) -> None:
    init(site, repository)
    fill(site)
    assert run_runner(site, repository, "backup", LIBRESH_BACKUP_ID="b1").returncode == 0
    with locked(repository, tmp_path):
        # restic 0.14 has no --retry-lock: the retention fails at once, and says why.
        run = run_runner(site, repository, "forget")
        assert run.returncode == 17, run.stderr
        assert "is locked by another run" in str(run.result["error"])
        assert "already locked" in str(run.result["error"])
    assert run_runner(site, repository, "forget").returncode == 0


def test_restic_waits_for_a_lock_when_it_can(site: Site, repository: dict[str, str]) -> None:
    # restic 0.16+ (the Job's image has 0.18) waits for another run's lock, a bounded time:
    # a restic that says it is 0.18.1 gets --retry-lock before its command, and calls that
    # read without a lock do not.
    calls = site.root / "restic-calls"
    wrappers = site.root / "wrappers"
    wrappers.mkdir()
    wrapper = wrappers / "restic"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >>"{calls}"\n'
        'if [ "$1" = version ]; then echo "restic 0.18.1 compiled with go1.24 on linux/amd64"; '
        "exit 0; fi\n"
        'case "$1" in --retry-lock=*) shift ;; esac\n'
        f'exec {shutil.which("restic")} "$@"\n'
    )
    wrapper.chmod(0o755)
    path = f"{wrappers}:{site.postgres.bindir}:{os.environ['PATH']}"
    init(site, repository)
    fill(site)
    assert run_runner(site, repository, "backup", PATH=path, LIBRESH_LOCK_WAIT="2m").returncode == 0
    assert run_runner(site, repository, "snapshots", PATH=path).returncode == 0
    lines = calls.read_text().splitlines()
    backups = [line for line in lines if " backup " in f" {line} "]
    assert backups and all(line.startswith("--retry-lock=2m backup ") for line in backups)
    listings = [line for line in lines if "snapshots --no-lock" in line]
    assert listings and not any("--retry-lock" in line for line in listings)
