#!/usr/bin/python3
"""/vaultwarden of libresh's Vaultwarden MODEL image: not Vaultwarden.

Python's standard library (http.server, sqlite3) playing the rules of dani-garcia/vaultwarden
that libresh's template, probe and hooks rely on; README.md beside this file names each rule's
upstream source. Upstream starts like this (src/main.rs main): arguments first (`backup`,
`--version`), then the data folder check, the RSA key, the web vault check, the tmp folder,
the database (migrations, WAL) and the web server. The model adds one thing Vaultwarden does
not do by itself: a writer standing for busy clients, committing a small transaction every
WRITE_INTERVAL seconds, so that backups are taken while SQLite writes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from urllib.parse import quote, urlparse

# The version this image stands for (the model's own variable: upstream builds it in).
VERSION = os.environ.get("LIBRESH_MODEL_VERSION", "1.37.2")
WRITE_INTERVAL = 0.020  # seconds between the writer's transactions (README, "The writer")
ROW_BYTES = 512  # a cipher's encrypted data: random, so nothing compresses it away
# What every pooled connection runs first (src/db/mod.rs default_init_stmts, SQLite).
INIT_STATEMENTS = ("PRAGMA busy_timeout = 5000", "PRAGMA synchronous = NORMAL")

# The model's schema, under upstream's migration names (migrations/sqlite/*): the SQL is the
# model's own. (name, first version that embeds it, statements).
MIGRATIONS: tuple[tuple[str, tuple[int, ...], tuple[str, ...]], ...] = (
    (
        "2018-01-14-171611_create_tables",
        (1, 0, 0),
        (
            "CREATE TABLE ciphers (uuid CHAR(36) NOT NULL PRIMARY KEY, "
            "seq INTEGER NOT NULL UNIQUE, data BLOB NOT NULL, created_at DATETIME NOT NULL)",
            # The writer's invariant: rows == count(ciphers), last_seq == max(seq).
            "CREATE TABLE libresh_model_writes (id INTEGER PRIMARY KEY CHECK (id = 1), "
            "rows INTEGER NOT NULL, last_seq INTEGER NOT NULL)",
            "INSERT INTO libresh_model_writes (id, rows, last_seq) VALUES (1, 0, 0)",
            # One row per start: the version and the sequence the database held then.
            "CREATE TABLE libresh_model_starts (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "version TEXT NOT NULL, started_at DATETIME NOT NULL, last_seq INTEGER NOT NULL)",
        ),
    ),
    (
        "2026-03-09-005927_add_archives",
        (1, 37, 0),
        (
            "CREATE TABLE archives (user_uuid CHAR(36) NOT NULL, "
            "cipher_uuid CHAR(36) NOT NULL REFERENCES ciphers (uuid) ON DELETE CASCADE, "
            "archived_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP, "
            "PRIMARY KEY (user_uuid, cipher_uuid))",
        ),
    ),
)


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def log(level: str, message: str) -> None:
    now = dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    print(f"[{now}][vaultwarden][{level}] {message}", flush=True)


def env_bool(name: str, default: bool) -> bool:
    """src/config.rs reads booleans with Rust's FromStr: "true" or "false"."""
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() == "true"


def data_folder() -> str:
    return os.environ.get("DATA_FOLDER", "data")  # config.rs: "data", relative to WORKDIR /


def database_path() -> str:
    """DATABASE_URL, default DATA_FOLDER/db.sqlite3: with sqlite:// from 1.35 (1.37.2's
    config.rs), a bare path before (1.34.1's); the scheme is stripped to open the file."""
    default = f"{data_folder()}/db.sqlite3"
    if version_tuple(VERSION) >= (1, 35):
        default = "sqlite://" + default
    url = os.environ.get("DATABASE_URL", default)
    return url.removeprefix("sqlite://")


def connect(path: str, *, mode: str = "rwc", timeout: float = 5.0) -> sqlite3.Connection:
    """A connection in autocommit (transactions are written out, as diesel's are)."""
    uri = f"file:{quote(str(Path(path).absolute()))}?mode={mode}"
    return sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)


def pooled_connection(path: str) -> sqlite3.Connection:
    """A connection of the pool: r2d2 with diesel's SQLite manager (src/db/mod.rs)."""
    conn = connect(path, timeout=5.0)
    for statement in INIT_STATEMENTS:
        conn.execute(statement)
    return conn


# --- the database ------------------------------------------------------------------------------


def migration_version(name: str) -> str:
    """The version diesel records for a migration folder: its leading date, digits only."""
    return name.split("_", 1)[0].replace("-", "")


def run_migrations(path: str, announce: bool = True) -> None:
    """src/db/mod.rs sqlite_migrations::run_migrations: open (creating the file), foreign keys
    off, WAL when ENABLE_DB_WAL (default true), then diesel's pending migrations: those embedded
    in the binary whose version is not in __diesel_schema_migrations. Versions applied by a
    newer binary are not looked at: an older binary starts on a newer database."""
    conn = connect(path)
    try:
        conn.execute("PRAGMA foreign_keys = OFF")
        if env_bool("ENABLE_DB_WAL", True):
            conn.execute("PRAGMA journal_mode = wal")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS __diesel_schema_migrations ("
            "version VARCHAR(50) PRIMARY KEY NOT NULL, "
            "run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        )
        applied = {row[0] for row in conn.execute("SELECT version FROM __diesel_schema_migrations")}
        for name, since, statements in MIGRATIONS:
            if since > version_tuple(VERSION) or migration_version(name) in applied:
                continue
            conn.execute("BEGIN")
            for statement in statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO __diesel_schema_migrations (version) VALUES (?)",
                (migration_version(name),),
            )
            conn.execute("COMMIT")
            if announce:  # the model's line; `backup` logs nothing (no logger set up yet)
                log("INFO", f"migration {name} applied")
    finally:
        conn.close()


def record_start(path: str) -> int:
    """The model's own: which version started on which sequence (tests read it after a
    restore, while the writer already adds rows)."""
    conn = pooled_connection(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        (last_seq,) = conn.execute(
            "SELECT last_seq FROM libresh_model_writes WHERE id = 1"
        ).fetchone()
        conn.execute(
            "INSERT INTO libresh_model_starts (version, started_at, last_seq) VALUES (?, ?, ?)",
            (VERSION, utc_now_text(), last_seq),
        )
        conn.execute("COMMIT")
        return int(last_seq)
    finally:
        conn.close()


def utc_now_text() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def write_one(conn: sqlite3.Connection) -> None:
    """One cipher and the counter in one transaction: a copy that holds one without the other
    is not a copy of any moment of this database."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        (seq,) = conn.execute(
            "SELECT last_seq + 1 FROM libresh_model_writes WHERE id = 1"
        ).fetchone()
        conn.execute(
            "INSERT INTO ciphers (uuid, seq, data, created_at) VALUES (?, ?, ?, ?)",
            (str(uuid.uuid4()), seq, os.urandom(ROW_BYTES), utc_now_text()),
        )
        conn.execute(
            "UPDATE libresh_model_writes SET rows = rows + 1, last_seq = ? WHERE id = 1", (seq,)
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def write_forever(path: str, stop: threading.Event) -> None:
    """The writer (model only). Each commit changes about four pages (the cipher's leaf, its
    uuid and seq index leaves, the counter): SQLite's default wal_autocheckpoint (1000 pages)
    then checkpoints every ~250 commits, a few seconds apart."""
    conn = pooled_connection(path)
    try:
        while not stop.wait(WRITE_INTERVAL):
            try:
                write_one(conn)
            except sqlite3.Error as error:  # e.g. busy beyond 5 s: the next one tries again
                log("ERROR", f"model writer: {error}")
    finally:
        conn.close()


# --- /vaultwarden backup -------------------------------------------------------------------------


def backup_file_name(path: str) -> str:
    """db_<UTC %Y%m%d_%H%M%S>.sqlite3 beside the database (src/db/mod.rs)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d_%H%M%S")
    return str(Path(path).parent / f"db_{stamp}.sqlite3")


def backup_sqlite() -> str:
    """1.37.2 (src/db/mod.rs backup_sqlite): a read-only connection of its own, with no busy
    timeout, and VACUUM INTO a new file. 1.34.1 (src/main.rs backup_sqlite, db::backup_database):
    through a pool built as the server's (which runs the pending migrations first), so with
    the pool's busy timeout."""
    path = database_path()
    if version_tuple(VERSION) >= (1, 35):
        conn = connect(path, mode="ro", timeout=0.0)
    else:
        run_migrations(path, announce=False)
        conn = pooled_connection(path)
    try:
        target = backup_file_name(path)
        conn.execute("VACUUM INTO ?", (target,))
        return target
    finally:
        conn.close()


def backup_command() -> int:
    """`vaultwarden backup`: upstream's line on stdout and exit 0, or "Backup failed." and 1."""
    try:
        target = backup_sqlite()
    except sqlite3.Error as error:
        print(f"Backup failed. {type(error).__name__}({str(error)!r})", flush=True)
        return 1
    print(f"Backup to '{target}' was successful", flush=True)
    return 0


# --- the start ---------------------------------------------------------------------------------


def in_container() -> bool:
    """src/util.rs is_running_in_container."""
    marks = ("/.dockerenv", "/run/.containerenv", "/run/secrets/kubernetes.io")
    return any(Path(mark).exists() for mark in (*marks, "/var/run/secrets/kubernetes.io"))


def check_data_folder() -> None:
    """src/main.rs check_data_folder: the folder must exist and be a directory (upstream's
    check that a Docker volume is not anonymous is left out: see README)."""
    folder = data_folder()
    if not Path(folder).exists():
        log("ERROR", f"Data folder '{folder}' doesn't exist.")
        if in_container():
            log("ERROR", "Verify that your data volume is mounted at the correct location.")
        else:
            log("ERROR", "Create the data folder and try again.")
        sys.exit(1)
    if not Path(folder).is_dir():
        log("ERROR", f"Data folder '{folder}' is not a directory.")
        sys.exit(1)


def initialize_keys() -> None:
    """src/auth.rs initialize_keys: rsa_key.pem read, or made (RSA 2048, PEM) when missing;
    a key that does not parse stops the start. openssl is in upstream's image too."""
    key = Path(data_folder()) / "rsa_key.pem"
    if key.exists():
        checked = subprocess.run(
            ["openssl", "rsa", "-in", str(key), "-check", "-noout"],
            capture_output=True,
            text=True,
            check=False,
        )
        if checked.returncode != 0:
            problem = checked.stderr.strip()
            log("ERROR", f"Error creating private key '{key}'\n{problem}\nExiting Vaultwarden!")
            sys.exit(1)
        return
    made = key.with_name(key.name + ".new")
    subprocess.run(
        ["openssl", "genrsa", "-traditional", "-out", str(made), "2048"],
        capture_output=True,
        check=True,
    )
    made.rename(key)
    log("INFO", f"Private key '{key}' created correctly")


def check_web_vault() -> None:
    """src/main.rs check_web_vault: WEB_VAULT_FOLDER (default web-vault/) must hold index.html
    unless WEB_VAULT_ENABLED=false."""
    if not env_bool("WEB_VAULT_ENABLED", True):
        return
    folder = os.environ.get("WEB_VAULT_FOLDER", "web-vault/")
    if not (Path(folder) / "index.html").exists():
        log("ERROR", f"Web vault is not found at '{folder}'.")
        log("ERROR", "You can also set the environment variable 'WEB_VAULT_ENABLED=false'")
        sys.exit(1)


def create_db_pool() -> str:
    path = database_path()
    try:
        run_migrations(path)
    except sqlite3.Error as error:
        log("ERROR", f"Error creating database pool: {error}")
        sys.exit(1)
    return path


# --- the web server -----------------------------------------------------------------------------


def base_path() -> str:
    """The path of DOMAIN: every route is mounted under it (src/main.rs launch_rocket,
    CONFIG.domain_path)."""
    return urlparse(os.environ.get("DOMAIN", "")).path.rstrip("/")


def alive(path: str) -> bool:
    """src/api/web.rs alive: the route takes a DbConn, so it answers only when the pool gives a
    connection (r2d2 checks it with SELECT 1)."""
    try:
        conn = connect(path, mode="rw")
        try:
            for statement in INIT_STATEMENTS:
                conn.execute(statement)
            conn.execute("SELECT 1").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as error:
        log("ERROR", f"/alive: no database connection: {error}")
        return False
    return True


def make_handler(db: str, base: str) -> type[BaseHTTPRequestHandler]:
    web_vault = Path(os.environ.get("WEB_VAULT_FOLDER", "web-vault/"))

    class Handler(BaseHTTPRequestHandler):
        server_version = "Rocket"
        sys_version = ""

        def answer(self, status: int, body: bytes, kind: str, with_body: bool) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def route(self, with_body: bool) -> None:
            where = self.path.split("?", 1)[0]
            if where == f"{base}/alive":
                if alive(db):
                    now = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
                    body = json.dumps(now.replace("+00:00", "Z")).encode()
                    self.answer(200, body, "application/json", with_body)
                else:
                    self.answer(503, b"", "text/plain", with_body)
            elif where in (f"{base}/", f"{base}/index.html") and env_bool(
                "WEB_VAULT_ENABLED", True
            ):
                page = (web_vault / "index.html").read_bytes()
                self.answer(200, page, "text/html; charset=utf-8", with_body)
            else:
                self.answer(404, b"", "text/plain", with_body)

        def do_GET(self) -> None:
            self.route(with_body=True)

        def do_HEAD(self) -> None:
            self.route(with_body=False)

        def log_message(self, format: str, *args: object) -> None:
            pass  # upstream logs no /alive requests (util.rs LOGGED_ROUTES)

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True


def make_server(db: str) -> Server:
    """Rocket's ROCKET_ADDRESS and ROCKET_PORT (its defaults 127.0.0.1 and 8000; the image sets
    0.0.0.0 and 80)."""
    address = os.environ.get("ROCKET_ADDRESS", "127.0.0.1")
    port = int(os.environ.get("ROCKET_PORT", "8000"))
    if ":" in address:
        Server.address_family = socket.AF_INET6
    return Server((address, port), make_handler(db, base_path()))


def serve() -> int:
    log("INFO", f"Vaultwarden MODEL (libresh), standing for Vaultwarden {VERSION}")
    check_data_folder()
    initialize_keys()
    check_web_vault()
    Path(data_folder(), "tmp").mkdir(exist_ok=True)
    db = create_db_pool()
    last_seq = record_start(db)
    log("INFO", f"model: the database holds {last_seq} writes")
    server = make_server(db)
    stop = threading.Event()
    writer = threading.Thread(target=write_forever, args=(db, stop), name="writer")
    writer.start()
    threading.Thread(target=server.serve_forever, name="rocket", daemon=True).start()
    address = os.environ.get("ROCKET_ADDRESS", "127.0.0.1")
    log("INFO", f"Rocket has launched from http://{address}:{server.server_port}")
    install_signals(stop, lambda: backup_in_server())
    while not stop.wait(0.5):
        pass
    log("INFO", "Shutdown signal received: stopping")
    server.shutdown()
    writer.join()
    log("INFO", "Vaultwarden process exited!")
    return 0


def backup_in_server() -> None:
    """SIGUSR1: the same backup, from the running server (src/main.rs launch_rocket)."""
    try:
        log("INFO", f"Backup to '{backup_sqlite()}' was successful")
    except sqlite3.Error as error:
        log("ERROR", f"Backup failed. {error}")


def install_signals(stop: threading.Event, on_usr1: Callable[[], None]) -> None:
    """SIGINT and SIGTERM stop the server gracefully (the writer's transaction ends first);
    SIGUSR1 makes a backup."""

    def stopping(signum: int, frame: FrameType | None) -> None:
        stop.set()

    def usr1(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=on_usr1, name="backup").start()

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    signal.signal(signal.SIGUSR1, usr1)


def main(argv: list[str]) -> int:
    """src/main.rs parse_args: -h, -v, then a subcommand; an unknown one exits 0 silently."""
    if "-h" in argv or "--help" in argv:
        print(f"Vaultwarden {VERSION} (libresh's MODEL)\n\nCOMMAND:\n    backup")
        return 0
    if "-v" in argv or "--version" in argv:
        print(f"Vaultwarden {VERSION}\nWeb-Vault (the model's page)")
        return 0
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command == "backup":
        return backup_command()
    if command == "hash":
        print("`vaultwarden hash` is not in libresh's model")
        return 1
    if command is not None:
        return 0
    return serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
