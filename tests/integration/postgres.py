"""A real PostgreSQL server for tests: initdb and pg_ctl from Debian's postgresql package, in a
temporary directory, listening on 127.0.0.1 (passwords required over TCP) and a socket."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from libresh_cli.lab.processes import free_ports


@dataclass(frozen=True)
class Postgres:
    bindir: Path
    socket_dir: Path
    port: int

    def admin_env(self) -> dict[str, str]:
        """libpq variables for the superuser over the socket (trusted)."""
        return {
            "PATH": f"{self.bindir}:{os.environ['PATH']}",
            "PGHOST": str(self.socket_dir),
            "PGPORT": str(self.port),
            "PGUSER": "postgres",
            "PGSSLMODE": "disable",
        }

    def tcp_env(self, user: str, password: str) -> dict[str, str]:
        """libpq variables for a role over TCP (with its password), as a Job connects."""
        return {
            "PATH": f"{self.bindir}:{os.environ['PATH']}",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGUSER": user,
            "PGPASSWORD": password,
            "PGSSLMODE": "disable",
        }

    def admin_sql(self, sql: str, database: str = "postgres") -> str:
        """Runs SQL as the superuser (over the socket); its rows, unaligned, one a line."""
        done = subprocess.run(
            [
                str(self.bindir / "psql"),
                "--no-psqlrc",
                "-tA",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                database,
            ],
            input=sql,
            env=self.admin_env(),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    @property
    def major(self) -> int:
        return int(self.admin_sql("SHOW server_version_num").strip()) // 10000

    def psql_tcp(
        self, user: str, password: str, database: str, sql: str
    ) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ["PATH"], "PGPASSWORD": password, "PGSSLMODE": "disable"}
        return subprocess.run(
            [
                str(self.bindir / "psql"),
                "--no-psqlrc",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                user,
                "-d",
                database,
                "-tAc",
                sql,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )


def find_bindir() -> Path | None:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    return found[-1].parent if found else None


def _as_postgres(command: list[str]) -> list[str]:
    # initdb refuses to run as root; the Debian package creates the `postgres` user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@contextmanager
def running_postgres() -> Iterator[Postgres]:
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql")
    # Not under pytest's tmp_path: that is private to root, and the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="libresh-test-pg-"))
    try:
        with _server(bindir, base) as server:
            yield server
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def _server(bindir: Path, base: Path) -> Iterator[Postgres]:
    data, sockets = base / "data", base / "run"
    sockets.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sockets, "postgres")
    subprocess.run(
        _as_postgres(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ]
        ),
        check=True,
        capture_output=True,
    )
    (port,) = free_ports(1)
    options = f"-k {sockets} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        _as_postgres(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(base / "postgres.log"),
                "-w",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield Postgres(bindir, sockets, port)
    finally:
        subprocess.run(
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            check=False,
            capture_output=True,
        )
