"""Test hosts: real OpenSSH servers, each in network, mount and UTS namespaces of its own.

A host has its own address (10.77.N.2, reached from the test's namespace over a veth pair),
its own hostname, and its own copies of what a bootstrap changes: /etc (users, sudoers,
/etc/rancher), /var/lib, /var/log and /usr/local/bin are per-host directories bind-mounted
over the real ones, so nothing a test does touches this machine. Users: root (key login),
`admin` (passwordless sudo), `nosudo` (no sudo) and `nokey` (whose
authorized keys do not hold the test's key). Needs root, `ip`, `unshare`, `sshd`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from libresh_cli.settings import Paths

REPO = Path(__file__).resolve().parents[2]
SSHD = "/usr/sbin/sshd"
USERS = {"admin": 1500, "nosudo": 1501, "nokey": 1502}
PREFIX = "lrt"  # namespaces and links of these tests: lrt<N>, lrt<N>h / lrt<N>n


def available() -> str | None:
    """Why test hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "test hosts need root (network and mount namespaces)"
    for tool in (SSHD, "/usr/sbin/ip", "/usr/bin/unshare", "/usr/bin/sudo"):
        if not Path(tool).exists():
            return f"{tool} is missing (Debian: openssh-server, iproute2, util-linux, sudo)"
    return None


@dataclass
class TestHost:
    __test__ = False  # not a test class, despite its name

    index: int
    root: Path
    client_dir: Path
    process: subprocess.Popen[bytes] | None = None
    extra: list[subprocess.Popen[bytes]] = field(default_factory=list)
    overrides: dict[str, Path] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.index}"

    @property
    def address(self) -> str:
        return f"10.77.{self.index}.2"

    @property
    def hostname(self) -> str:
        return f"testhost-{self.index}"

    # Paths inside the host, seen from the test's side.
    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def var_lib(self) -> Path:
        return self.root / "var-lib"

    @property
    def usr_local_bin(self) -> Path:
        return self.root / "usr-local-bin"

    @property
    def sshd_log(self) -> Path:
        return self.root / "sshd.log"

    @property
    def ssh_config(self) -> Path:
        return self.client_dir / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        return self.client_dir / "known_hosts"

    # -- lifecycle ---------------------------------------------------------------------------

    def create(self) -> None:
        self.root.mkdir(parents=True)
        self._make_filesystem()
        self._make_network()
        self._make_host_key()
        self._write_sshd_config()
        self._write_client_config()
        self.start_sshd()

    def _make_filesystem(self) -> None:
        shutil.copytree("/etc", self.etc, symlinks=True)
        # os-release is a link into /usr on Debian: a file of its own, so a test can change it.
        release = Path("/etc/os-release").resolve().read_text()
        (self.etc / "os-release").unlink()
        (self.etc / "os-release").write_text(release)
        (self.etc / "hostname").write_text(self.hostname + "\n")
        for name, uid in USERS.items():
            home = self.root / "home" / name
            home.mkdir(parents=True)
            os.chown(home, uid, uid)
            with (self.etc / "passwd").open("a") as f:
                f.write(f"{name}:x:{uid}:{uid}::/home/{name}:/bin/sh\n")
            with (self.etc / "group").open("a") as f:
                f.write(f"{name}:x:{uid}:\n")
            with (self.etc / "shadow").open("a") as f:
                f.write(f"{name}:*:20000:0:99999:7:::\n")  # no password, not locked
        sudoers = self.etc / "sudoers.d" / "admin"
        sudoers.write_text("admin ALL=(ALL) NOPASSWD:ALL\n")
        sudoers.chmod(0o440)
        for directory in (self.var_lib, self.root / "var-log", self.usr_local_bin):
            directory.mkdir()
        self.client_dir.mkdir(parents=True, exist_ok=True)

    def _make_network(self) -> None:
        self.cleanup_network(self.index)
        host_side, ns_side = f"{self.name}h", f"{self.name}n"
        for command in (
            f"ip netns add {self.name}",
            f"ip link add {host_side} type veth peer name {ns_side}",
            f"ip link set {ns_side} netns {self.name}",
            f"ip addr add 10.77.{self.index}.1/30 dev {host_side}",
            f"ip link set {host_side} up",
            f"ip netns exec {self.name} ip addr add {self.address}/30 dev {ns_side}",
            f"ip netns exec {self.name} ip link set {ns_side} up",
            f"ip netns exec {self.name} ip link set lo up",
        ):
            subprocess.run(command.split(), check=True, capture_output=True)

    @staticmethod
    def cleanup_network(index: int) -> None:
        name = f"{PREFIX}{index}"
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
        for pid in pids.stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        subprocess.run(["ip", "link", "del", f"{name}h"], capture_output=True)

    def link_privately(self, other: TestHost) -> tuple[str, str]:
        """A private network between two hosts only (like a provider's private network):
        returns the addresses of (self, other) on it, unreachable from the test's side."""
        here, there = f"{PREFIX}p{self.index}", f"{PREFIX}p{other.index}"
        subnet = f"10.78.{self.index}"
        for command in (
            f"ip link add {here} type veth peer name {there}",
            f"ip link set {here} netns {self.name}",
            f"ip link set {there} netns {other.name}",
            f"ip netns exec {self.name} ip addr add {subnet}.1/30 dev {here}",
            f"ip netns exec {self.name} ip link set {here} up",
            f"ip netns exec {other.name} ip addr add {subnet}.2/30 dev {there}",
            f"ip netns exec {other.name} ip link set {there} up",
        ):
            subprocess.run(command.split(), check=True, capture_output=True)
        return f"{subnet}.1", f"{subnet}.2"

    def _make_host_key(self) -> None:
        key = self.root / "ssh_host_ed25519_key"
        key.unlink(missing_ok=True)
        Path(f"{key}.pub").unlink(missing_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)

    def _write_sshd_config(self) -> None:
        keys = self.client_dir / "id_ed25519"
        if not keys.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys)], check=True
            )
        # Read through the host's /etc: sshd reads a user's keys as that user, who could not
        # reach them through the test's private temporary directory.
        authorized = self.etc / "ssh" / "authorized_keys"
        authorized.mkdir(exist_ok=True)
        for user in ("root", *USERS):
            if user != "nokey":
                (authorized / user).write_text(Path(f"{keys}.pub").read_text())
        (self.root / "sshd_config").write_text(
            "ListenAddress 0.0.0.0\n"  # every address of its own namespace
            f"HostKey {self.root}/ssh_host_ed25519_key\n"
            f"PidFile {self.root}/sshd.pid\n"
            "AuthorizedKeysFile /etc/ssh/authorized_keys/%u\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n"
            "LogLevel VERBOSE\nMaxSessions 20\n"
        )

    def _write_client_config(self) -> None:
        self.ssh_config.write_text(
            "Host *\n"
            f"  UserKnownHostsFile {self.known_hosts}\n"
            "  GlobalKnownHostsFile /dev/null\n"
            f"  IdentityFile {self.client_dir / 'id_ed25519'}\n"
            "  IdentitiesOnly yes\n"
        )

    def start_sshd(self) -> None:
        mounts = " && ".join(
            [
                f"mount --bind {self.etc} /etc",
                f"mount --bind {self.var_lib} /var/lib",
                f"mount --bind {self.root / 'var-log'} /var/log",
                f"mount --bind {self.usr_local_bin} /usr/local/bin",
                f"mount --bind {self.root / 'home'} /home",
                f"hostname {self.hostname}",
                "mkdir -p /run/sshd",
            ]
        )
        for target, content in self.overrides.items():  # files over /proc and the like
            mounts += f" && mount --bind {content} {target}"
        command = [
            "ip", "netns", "exec", self.name,
            "unshare", "--mount", "--uts", "--propagation", "private",
            "sh", "-c", f"{mounts} && exec {SSHD} -D -f {self.root}/sshd_config -E {self.sshd_log}",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"sshd of {self.name} exited: {self.sshd_log.read_text()}")
            probe = subprocess.run(
                ["ip", "netns", "exec", self.name, "ss", "-Hltn", "sport = :22"],
                capture_output=True,
                text=True,
            )
            if probe.stdout.strip():
                return
            time.sleep(0.05)
        raise RuntimeError(f"sshd of {self.name} did not listen within 10 s")

    def stop_sshd(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def override(self, target: str, content: str) -> None:
        """Make `target` (e.g. /proc/meminfo) read `content` inside the host, from the next
        sshd start on."""
        path = self.root / "overrides" / target.strip("/").replace("/", "-")
        path.parent.mkdir(exist_ok=True)
        path.write_text(content)
        self.overrides[target] = path

    def drop_overrides(self) -> None:
        self.overrides.clear()
        self.restart()

    def restart(self, *, new_host_key: bool = False) -> None:
        self.stop_sshd()
        if new_host_key:
            self._make_host_key()
        self.start_sshd()

    def listen(self, port: int) -> None:
        """Something else holds `port` on the host."""
        code = (
            "import socket, time; s = socket.socket(); "
            f"s.bind(('0.0.0.0', {port})); s.listen(); time.sleep(3600)"
        )
        process = subprocess.Popen(["ip", "netns", "exec", self.name, sys.executable, "-c", code])
        self.extra.append(process)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            probe = subprocess.run(
                ["ip", "netns", "exec", self.name, "ss", "-Hltn", f"sport = :{port}"],
                capture_output=True,
                text=True,
            )
            if probe.stdout.strip():
                return
            time.sleep(0.05)

    def stop_listening(self) -> None:
        for process in self.extra:
            process.kill()
            process.wait()
        self.extra.clear()

    def sessions(self) -> list[int]:
        """Pids of sshd's per-connection processes (not the listener)."""
        listener = self._listener_pid()
        found = []
        pids = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        for pid in pids.stdout.split():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"sshd:") and int(pid) != listener:
                found.append(int(pid))
        return found

    def _listener_pid(self) -> int | None:
        pidfile = self.root / "sshd.pid"
        return int(pidfile.read_text()) if pidfile.exists() else None

    def cut_connections(self) -> None:
        """What a network drop does to the SSH connections to this host."""
        for pid in self.sessions():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def accepted_logins(self) -> int:
        return self.sshd_log.read_text().count("Accepted publickey")

    def destroy(self) -> None:
        for process in self.extra:
            process.kill()
        self.stop_sshd()
        self.cleanup_network(self.index)  # also kills what the stand-in started there
        shutil.rmtree(self.root, ignore_errors=True)

    # -- the k3s installer stand-in ----------------------------------------------------------

    def standin_installer(self) -> Path:
        """The script to pass as --install-script (see tests/standin/k3s_standin.py)."""
        script = self.client_dir / "install-k3s-standin.sh"
        script.write_text(standin_script())
        return script

    def cli_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "LIBRESH_SSH_CONFIG": str(self.ssh_config),
            "XDG_CONFIG_HOME": str(self.client_dir / "config"),
            "NO_COLOR": "1",
        }


def standin_script() -> str:
    from tests.upstream import k3s_crds

    k3s_crds()  # into the cache now: the stand-in on the test host cannot reach the proxy
    return (
        "#!/bin/sh\n"
        "# STAND-IN for the k3s installer (tests only): see tests/standin/k3s_standin.py.\n"
        f"export STANDIN_CACHE={Paths.from_env().cache} PYTHONPATH={REPO}\n"
        f"exec {sys.executable} -m tests.standin.k3s_standin\n"
    )


class PrivateNetwork:
    """A provider's private network for several test hosts: a bridge in the test's namespace
    (holding the gateway address, as Hetzner's networks have one), and on each host an
    interface `priv0` with the address given. Hosts reach each other on it; the test's side
    reaches them too (the fake load balancer forwards over it)."""

    def __init__(self, prefix: str = "10.79.0", name: str = "0") -> None:
        self.prefix = prefix
        self.BRIDGE = f"{PREFIX}br{name}"

    @property
    def gateway(self) -> str:
        return f"{self.prefix}.1"

    def address_of(self, host: TestHost) -> str:
        return f"{self.prefix}.{10 + host.index % 200}"

    def create(self) -> None:
        self.destroy()
        for command in (
            f"ip link add {self.BRIDGE} type bridge",
            f"ip addr add {self.gateway}/24 dev {self.BRIDGE}",
            f"ip link set {self.BRIDGE} up",
        ):
            subprocess.run(command.split(), check=True, capture_output=True)

    def attach(self, host: TestHost) -> str:
        outside, inside = f"{host.name}v", f"{host.name}w"
        address = self.address_of(host)
        subprocess.run(["ip", "link", "del", outside], capture_output=True)
        for command in (
            f"ip link add {outside} type veth peer name {inside}",
            f"ip link set {outside} master {self.BRIDGE}",
            f"ip link set {outside} up",
            f"ip link set {inside} netns {host.name}",
            f"ip netns exec {host.name} ip link set {inside} name priv0",
            f"ip netns exec {host.name} ip addr add {address}/24 dev priv0",
            f"ip netns exec {host.name} ip link set priv0 up",
        ):
            subprocess.run(command.split(), check=True, capture_output=True)
        return address

    def destroy(self) -> None:
        subprocess.run(["ip", "link", "del", self.BRIDGE], capture_output=True)
