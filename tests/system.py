"""What the tests need from the machine beyond Python packages, and getting it.

The README's test command (`./install.sh --dev && .venv/bin/pytest`) is the whole setup: on a
fresh Debian machine, run as root, the session installs the Debian packages below before any
test runs; as another user it stops at once with the one `apt-get` line to run. Go (the lab's
control plane is built from Go modules) is not a Debian package of a recent enough version,
so it is only checked and named.

Real parts the tests run: a PostgreSQL server (database provisioning, backups), restic (the
backup runner), busybox (the runner under the shell of the Alpine image its Job uses); for the
bootstrap's SSH test hosts sshd, sudo, ip (network namespaces), nsenter/flock; openssl (client
keys in test kubeconfigs); for the lab's real node containerd, runc, the CNI plugins and
iptables, and mmdebstrap to build its images from Debian packages; PHP with pdo_pgsql for the
Nextcloud model image's rules (tests/integration/test_nextcloud_model.py)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

INSTALL_LOCK = Path("/run/lock/libresh-tests-apt.lock")

GO_MINIMUM = (1, 24)


def _command(name: str) -> Callable[[], bool]:
    return lambda: shutil.which(name) is not None


def _file(path: str) -> Callable[[], bool]:
    return lambda: Path(path).exists()


# Debian package -> how to tell it is there.
PACKAGES: dict[str, Callable[[], bool]] = {
    "postgresql": lambda: any(Path("/usr/lib/postgresql").glob("*/bin/initdb")),
    "restic": _command("restic"),
    "busybox": _command("busybox"),
    "openssh-server": _file("/usr/sbin/sshd"),
    "openssh-client": _command("ssh"),
    "sudo": _command("sudo"),
    "iproute2": _command("ip"),
    "util-linux": _command("nsenter"),
    "openssl": _command("openssl"),
    "containerd": _file("/usr/bin/containerd"),
    "runc": _file("/usr/sbin/runc"),
    "containernetworking-plugins": _file("/usr/lib/cni/bridge"),
    "iptables": _file("/usr/sbin/iptables"),
    "mmdebstrap": _command("mmdebstrap"),
    # The Nextcloud model image's PHP, run on this machine by test_nextcloud_model.py.
    "php-cli": _command("php"),
    "php-pgsql": lambda: any(Path("/etc/php").glob("*/mods-available/pdo_pgsql.ini")),
}


def missing_packages() -> list[str]:
    return [package for package, present in PACKAGES.items() if not present()]


def install_command(packages: list[str]) -> list[str]:
    return ["apt-get", "install", "-y", "-qq", *packages]


def go_problem() -> str | None:
    """None when a Go toolchain of GO_MINIMUM or newer is on PATH, else what is wrong."""
    go = shutil.which("go")
    if go is None:
        return "Go 1.24+ is needed to build the lab's control plane: https://go.dev/dl/"
    version = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True).stdout
    parts = version.strip().removeprefix("go").split(".")
    try:
        found = (int(parts[0]), int(parts[1]))
    except (ValueError, IndexError):
        return None  # a development build: let it try
    if found < GO_MINIMUM:
        return f"Go {version.strip()} is too old to build the lab's control plane: 1.24+ needed"
    return None


def prepare() -> str | None:
    """Install what is missing when root; otherwise (or when that fails) the one line to
    say. None when the machine has everything."""
    problem = go_problem()
    if problem:
        return problem
    missing = missing_packages()
    if not missing:
        return None
    line = " ".join(install_command(missing))
    if os.geteuid() != 0:
        return f"The tests need Debian packages that are missing; run: sudo {line}"
    # Test workers (pytest-xdist) each get here: one installs, the others wait, then find
    # nothing missing (apt-get itself gives up at once on a held dpkg lock).
    INSTALL_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with INSTALL_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = missing_packages()
        return _install(missing) if missing else None


def _install(missing: list[str]) -> str | None:
    line = " ".join(install_command(missing))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], install_command(missing)):
        if subprocess.run(command, env=env).returncode != 0:
            return f"Installing the tests' Debian packages failed; run by hand: {line}"
    still = missing_packages()
    return f"Still missing after apt-get install: {', '.join(still)}" if still else None
