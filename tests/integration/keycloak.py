"""A real Keycloak server for tests: the server distribution from Maven Central
(org.keycloak:keycloak-quarkus-dist), downloaded once into the user's cache and checked
against its pinned SHA-256, built once for an in-memory database (`kc.sh build`), and started
as a process on 127.0.0.1 with a bootstrap admin given in the environment, never in argv.

Facts relied on (Keycloak 26.7 server guides, "Configuring Keycloak", "Health checks",
"Bootstrapping and recovering an admin account"; bin/kc.sh of the distribution):
- `kc.sh build` persists build options (db, health) into lib/; `start --optimized` then skips
  the build step, which is most of a start on 2 cores.
- `db=dev-mem` is H2 in memory: every session starts from an empty server.
- KC_BOOTSTRAP_ADMIN_USERNAME / KC_BOOTSTRAP_ADMIN_PASSWORD make a temporary admin in the
  master realm at the first start.
- With health enabled, /health/ready on the management port (9000 by default) answers 200
  once Keycloak is initialized.
- kc.sh needs Java 21 or newer (JAVA_HOME or `java` on PATH); it sets -Xmx512m itself when
  no JAVA_OPTS are given and it is not in a container.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from libresh_cli.lab.processes import free_ports
from libresh_cli.settings import Paths

KEYCLOAK_VERSION = "26.7.3"
DIST_SHA256 = "27a6535553c3cdcd083872ba40629efafb3475e3b758e0c6f691395561dd0f1f"
DIST_URL = (
    "https://repo1.maven.org/maven2/org/keycloak/keycloak-quarkus-dist/"
    f"{KEYCLOAK_VERSION}/keycloak-quarkus-dist-{KEYCLOAK_VERSION}.zip"
)
BUILT_MARKER = "LIBRESH-BUILT"
# dev-mem: H2 in memory, every session starts empty. postgres: a real database, for tests of
# what survives a restart (backups); built apart, since build options stay in lib/.
DATABASES = ("dev-mem", "postgres")
MINIMUM_JAVA = 21
START_TIMEOUT = 300.0


@dataclass(frozen=True)
class Database:
    """A PostgreSQL database Keycloak keeps its data in (KC_DB_URL_* at run time)."""

    host: str
    port: int
    name: str
    user: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Keycloak:
    url: str  # e.g. http://127.0.0.1:PORT, the issuer's base
    admin_user: str
    admin_password: str
    pid: int
    started_in: float  # seconds from the process start to ready

    def rss_bytes(self) -> int:
        """The server's resident memory now (the JVM is a child of kc.sh)."""
        total = 0
        for pid in [self.pid, *_children(self.pid)]:
            status = Path(f"/proc/{pid}/status")
            if status.exists():
                for line in status.read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        return total


def _children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children")
    if not found.exists():
        return []
    direct = [int(p) for p in found.read_text().split()]
    return direct + [c for d in direct for c in _children(d)]


def find_java_home() -> Path | None:
    """A JDK of MINIMUM_JAVA or newer: $JAVA_HOME, else the newest under /usr/lib/jvm."""
    candidates = [Path(os.environ["JAVA_HOME"])] if os.environ.get("JAVA_HOME") else []
    candidates += sorted(Path("/usr/lib/jvm").glob("*"), key=_java_major, reverse=True)
    return next((c for c in candidates if _java_major(c) >= MINIMUM_JAVA), None)


def _java_major(home: Path) -> int:
    release = home / "release"
    if not release.exists() or not (home / "bin" / "java").exists():
        return 0
    for line in release.read_text().splitlines():
        if line.startswith("JAVA_VERSION="):
            return int(line.split("=", 1)[1].strip('"').split(".")[0])
    return 0


def ensure_distribution(paths: Paths, java_home: Path, db: str = "dev-mem") -> Path:
    """The unpacked distribution built for `db`, in the cache (downloaded and built once)."""
    assert db in DATABASES
    key = KEYCLOAK_VERSION if db == "dev-mem" else f"{KEYCLOAK_VERSION}-{db}"
    root = paths.cache / "keycloak" / key
    build_options = (f"--db={db}", "--health-enabled=true")
    home = root / f"keycloak-{KEYCLOAK_VERSION}"
    if (root / BUILT_MARKER).exists():
        return home
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "dist.zip"
    _download(archive)
    shutil.rmtree(home, ignore_errors=True)
    with zipfile.ZipFile(archive) as dist:
        dist.extractall(root)
    for script in (home / "bin").glob("*.sh"):
        script.chmod(0o755)
    subprocess.run(
        [str(home / "bin" / "kc.sh"), "build", *build_options],
        env={**os.environ, "JAVA_HOME": str(java_home)},
        check=True,
        capture_output=True,
        timeout=600,
    )
    archive.unlink()
    (root / BUILT_MARKER).write_text(f"{KEYCLOAK_VERSION} {' '.join(build_options)}\n")
    return home


def _download(target: Path) -> None:
    digest = hashlib.sha256()
    partial = target.with_suffix(".part")
    with (
        httpx.stream("GET", DIST_URL, timeout=httpx.Timeout(30.0, read=300.0)) as response,
        partial.open("wb") as out,
    ):
        response.raise_for_status()
        for chunk in response.iter_bytes(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != DIST_SHA256:
        partial.unlink()
        raise RuntimeError(f"{DIST_URL}: SHA-256 {digest.hexdigest()}, expected {DIST_SHA256}")
    partial.rename(target)


@contextmanager
def running_keycloak(
    paths: Paths, database: Database | None = None, admin_password: str | None = None
) -> Iterator[Keycloak]:
    """Keycloak on 127.0.0.1, empty (H2 in memory) or on `database`; the bootstrap admin is
    made at the first start on a database, so a later start on it takes the same password."""
    java_home = find_java_home()
    if java_home is None:
        raise RuntimeError(f"Keycloak needs Java {MINIMUM_JAVA}+: no such JDK under /usr/lib/jvm")
    home = ensure_distribution(paths, java_home, "postgres" if database else "dev-mem")
    http_port, management_port = free_ports(2)
    admin_password = admin_password or secrets.token_urlsafe(18)
    log_dir = Path(tempfile.mkdtemp(prefix="libresh-test-keycloak-"))
    env = {
        **os.environ,
        "JAVA_HOME": str(java_home),
        "KC_BOOTSTRAP_ADMIN_USERNAME": "admin",
        "KC_BOOTSTRAP_ADMIN_PASSWORD": admin_password,
    }
    if database is not None:
        env |= {
            "KC_DB_URL_HOST": database.host,
            "KC_DB_URL_PORT": str(database.port),
            "KC_DB_URL_DATABASE": database.name,
            "KC_DB_USERNAME": database.user,
            "KC_DB_PASSWORD": database.password,
        }
    command = [
        str(home / "bin" / "kc.sh"),
        "start",
        "--optimized",
        "--http-enabled=true",
        "--hostname-strict=false",
        "--http-host=127.0.0.1",
        f"--http-port={http_port}",
        f"--http-management-port={management_port}",
        # Its cluster transport (JGroups) binds to a site-local address of this machine by
        # default, and other tests make and remove such addresses (the SSH test hosts' veth
        # pairs, 10.77.N.1): one removed meanwhile stopped the start ("bind_addr /10.77.78.1
        # is not a valid interface"). A test server has no cluster to join: loopback.
        "--cache-embedded-network-bind-address=127.0.0.1",
    ]
    started = time.monotonic()
    with (log_dir / "keycloak.log").open("wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_ready(process, f"http://127.0.0.1:{management_port}/health/ready", log_dir)
        yield Keycloak(
            url=f"http://127.0.0.1:{http_port}",
            admin_user="admin",
            admin_password=admin_password,
            pid=process.pid,
            started_in=time.monotonic() - started,
        )
    finally:
        _stop(process)
        shutil.rmtree(log_dir, ignore_errors=True)


def _wait_ready(process: subprocess.Popen[bytes], health: str, log_dir: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (log_dir / "keycloak.log").read_text(errors="replace")[-4000:]
            raise RuntimeError(f"Keycloak exited with {process.returncode}:\n{log}")
        try:
            if httpx.get(health, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    _stop(process)
    raise RuntimeError(f"Keycloak was not ready within {START_TIMEOUT:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    # kc.sh execs java in the same process group (its own session): stop them together.
    os.killpg(process.pid, 15)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait(timeout=10)
