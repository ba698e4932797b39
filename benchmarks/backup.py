"""Backup runner figures, against a real PostgreSQL server and real restic repositories:

1. throughput of the runner (bootstrap/backup-runner.sh: volumes, a pg_dump streamed into
   restic, the record, then tagging the backup complete) beside plain restic doing the same
   data movement by hand (`restic backup` of the files, `pg_dump | restic backup --stdin`).
   Each run backs up into a fresh repository, so both do the full work. Target: ratio >= 0.9.
2. peak memory (largest resident set among the runner's processes: sh, pg_dump, restic).

    .venv/bin/python benchmarks/backup.py [--runs 3] [--files-mb 300] [--rows 300000]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from libresh_cli.backup.runner import runner_script  # noqa: E402
from tests.integration.postgres import Postgres, running_postgres  # noqa: E402

PASSWORD = "bench-password"  # noqa: S105 - a throwaway server


def make_database(server: Postgres, rows: int) -> str:
    for sql in (
        f"CREATE ROLE bench LOGIN PASSWORD '{PASSWORD}'",
        "CREATE DATABASE bench OWNER bench",
    ):
        subprocess.run(
            [str(server.bindir / "psql"), "-c", sql],
            env=server.admin_env(),
            check=True,
            capture_output=True,
        )
    uri = f"postgresql://bench:{quote(PASSWORD)}@127.0.0.1:{server.port}/bench?sslmode=disable"
    subprocess.run(
        [
            str(server.bindir / "psql"),
            "--dbname",
            uri,
            "-c",
            "CREATE TABLE t (id int PRIMARY KEY, body text);"  # noqa: S608 - rows is an int
            f"INSERT INTO t SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, {rows}) g",
        ],
        check=True,
        capture_output=True,
    )
    return uri


def make_files(volume: Path, megabytes: int) -> int:
    """One large file (half) and many small ones (the other half)."""
    volume.mkdir(parents=True)
    with (volume / "large.bin").open("wb") as out:
        for _ in range(megabytes // 2):
            out.write(os.urandom(1 << 20))
    small = volume / "small"
    small.mkdir()
    for n in range(megabytes // 2 * 16):
        (small / f"{n}.dat").write_bytes(os.urandom(64 * 1024))
    return sum(p.stat().st_size for p in volume.rglob("*") if p.is_file())


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def fresh_repository(base: Path, env: dict[str, str]) -> dict[str, str]:
    repo = base / f"repo-{time.monotonic_ns()}"
    env = {**env, "RESTIC_REPOSITORY": str(repo)}
    subprocess.run(["restic", "init"], env=env, check=True, capture_output=True)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files-mb", type=int, default=300)
    parser.add_argument("--rows", type=int, default=300_000)
    args = parser.parse_args()
    if shutil.which("restic") is None:
        sys.exit("restic is not installed: apt-get install restic")

    base = Path(tempfile.mkdtemp(prefix="libresh-bench-backup-"))
    try:
        with running_postgres() as server:
            uri = make_database(server, args.rows)
            data, databases, meta = base / "data", base / "databases", base / "meta"
            size = make_files(data / "app-data", args.files_mb)
            (databases / "postgres").mkdir(parents=True)
            (databases / "postgres" / "uri").write_text(uri)
            (meta / "record").mkdir(parents=True)
            (meta / "record" / "record.json").write_text(
                '{\n "app": "bench",\n "version": "1.0.0"\n}'
            )
            env = {
                "PATH": f"{server.bindir}:{os.environ['PATH']}",
                "HOME": str(base),
                "TMPDIR": str(base),
                "RESTIC_PASSWORD": "bench",
                "RESTIC_CACHE_DIR": str(base / "cache"),
            }
            dump = subprocess.run(
                ["pg_dump", "--no-owner", "--no-privileges", f"--dbname={uri}"],
                env=env,
                check=True,
                capture_output=True,
            ).stdout
            total = size + len(dump)
            print(f"data: {size / 1e6:.0f} MB of files + {len(dump) / 1e6:.0f} MB of dump")

            plain, runner = [], []
            for _ in range(args.runs):
                repo = fresh_repository(base, env)
                plain.append(
                    timed(["sh", "-c", f"cd {data} && restic backup -q app-data"], repo)
                    + timed(
                        [
                            "sh",
                            "-c",
                            f"pg_dump --no-owner --no-privileges --dbname='{uri}' | "
                            "restic backup -q --stdin --stdin-filename databases/postgres.sql",
                        ],
                        repo,
                    )
                )
                repo = fresh_repository(base, env)
                runner_env = {
                    **repo,
                    "LIBRESH_ACTION": "backup",
                    "LIBRESH_INSTANCE": "bench",
                    "LIBRESH_VOLUMES_DIR": str(data),
                    "LIBRESH_VOLUMES": "app-data",
                    "LIBRESH_DATABASES_DIR": str(databases),
                    "LIBRESH_DATABASES": "postgres",
                    "LIBRESH_META_DIR": str(meta),
                }
                runner.append(timed(["sh", str(runner_script())], runner_env))
            peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    finally:
        shutil.rmtree(base, ignore_errors=True)

    plain_rate = total / statistics.median(plain) / 1e6
    runner_rate = total / statistics.median(runner) / 1e6
    print(f"plain restic:  median {statistics.median(plain):.2f} s  ({plain_rate:.0f} MB/s)")
    print(f"libresh runner: median {statistics.median(runner):.2f} s  ({runner_rate:.0f} MB/s)")
    ratio = runner_rate / plain_rate
    verdict = "met" if ratio >= 0.9 else "MISSED"
    print(f"throughput ratio runner/plain: {ratio:.2f}  (target >= 0.9: {verdict})")
    print(f"peak memory of one process (restic, pg_dump or sh): {peak_kib / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
