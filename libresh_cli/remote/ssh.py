"""The system's OpenSSH client, with one multiplexed connection per host.

Why OpenSSH and not a Python library: it is what the user's `~/.ssh/config` (Host aliases,
ProxyJump, IdentityFile, certificates), agent, hardware keys and known_hosts files are written
for; a library honours only part of that. One master connection (ControlMaster) carries every
step, so a bootstrap costs one TCP connection and one authentication.

Host keys are checked on every connection (StrictHostKeyChecking=yes, never `no`): an unknown
key is fetched without logging in, its fingerprint shown, and it is trusted only when the user
(or `--accept-new-host-key`) says so; a changed key is refused.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from libresh_cli.errors import (
    BadInputError,
    ConflictError,
    LibreshError,
    OperationFailedError,
    PrerequisiteError,
    UnreachableError,
)
from libresh_cli.remote.base import CommandResult, ShellHost, run_process
from libresh_cli.settings import make_private_dirs

CONNECT_TIMEOUT = 15
# A dead link is noticed within a minute, even during a long silent step (the installer).
KEEPALIVE = ("-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4")
SSH_CONFIG_ENV = "LIBRESH_SSH_CONFIG"


@dataclass(frozen=True)
class SshTarget:
    """What the user typed: [USER@]HOST, with --port and --identity."""

    destination: str
    port: int | None = None
    identity: Path | None = None
    config_file: Path | None = None  # LIBRESH_SSH_CONFIG: used instead of ~/.ssh/config
    # Servers libresh created keep their keys in a file of their own (the cluster's), not in
    # the user's known_hosts: a destroyed cluster's addresses come back with other keys.
    known_hosts: Path | None = None

    def base_args(self) -> list[str]:
        args = ["ssh"]
        if self.known_hosts is not None:
            args += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
            args += ["-o", "GlobalKnownHostsFile=/dev/null"]
        if self.config_file is not None:
            args += ["-F", str(self.config_file)]
        if self.port is not None:
            args += ["-p", str(self.port)]
        if self.identity is not None:
            args += ["-i", str(self.identity)]
        return args


@dataclass(frozen=True)
class ResolvedHost:
    """The destination as OpenSSH resolves it from the config (`ssh -G`)."""

    hostname: str
    port: int
    user: str
    known_hosts: Path
    proxy_jump: str | None

    def describe(self) -> str:
        port = f" port {self.port}" if self.port != 22 else ""
        via = f" via {self.proxy_jump}" if self.proxy_jump else ""
        return f"{self.user}@{self.hostname}{port}{via}"


@dataclass(frozen=True)
class HostKey:
    """A key the host offered, not trusted yet."""

    fingerprints: list[str]  # "ED25519 SHA256:..." for each key line
    known_hosts_lines: str  # the lines to add to known_hosts, as OpenSSH wrote them
    known_hosts: Path  # where they go


# Asked when the host key is unknown: True trusts it. None means nobody can answer.
HostKeyDecision = Callable[[ResolvedHost, HostKey], bool] | None


MAX_IDENTITY_BYTES = 64 * 1024


def check_identity(path: Path) -> Path:
    """--identity: a private key only its owner can read, as OpenSSH demands (it ignores a
    key others can read, then fails to log in with a less clear message)."""
    try:
        mode = path.stat().st_mode
        start = b""
        if stat.S_ISREG(mode):  # never open a pipe: it would wait for a writer
            with path.open("rb") as handle:
                start = handle.read(MAX_IDENTITY_BYTES)
    except OSError as error:
        raise BadInputError(f"--identity {path}: {error.strerror}.") from None
    if not start.lstrip().startswith(b"-----BEGIN ") or b"PRIVATE KEY-----" not in start:
        raise BadInputError(
            f"--identity {path} is not a private key (an OpenSSH or PEM file beginning with "
            "-----BEGIN).",
            hint="Give the private key, not the .pub file: e.g. --identity ~/.ssh/id_ed25519.",
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise BadInputError(
            f"--identity {path} can be read by other users (mode {stat.S_IMODE(mode):o}); "
            "ssh will not use it.",
            hint=f"Make it private: chmod 600 {path}",
        )
    return path


def parse_ssh_config_dump(text: str) -> ResolvedHost:
    """Read `ssh -G` output (one `keyword value` a line, keywords lowercased)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        values.setdefault(key, value.strip())
    known = values.get("userknownhostsfile", "~/.ssh/known_hosts").split()[0]
    jump = values.get("proxyjump")
    return ResolvedHost(
        hostname=values.get("hostname", ""),
        port=int(values.get("port", "22")),
        user=values.get("user", ""),
        known_hosts=_expand_home(known),
        proxy_jump=None if jump in (None, "none") else jump,
    )


def _expand_home(path: str) -> Path:
    # OpenSSH expands ~ from the password database, not from $HOME.
    if path.startswith("~/"):
        return Path(pwd.getpwuid(os.getuid()).pw_dir) / path[2:]
    return Path(path)


def classify_ssh_failure(stderr: str, host: ResolvedHost, timeout: int) -> LibreshError:
    """Turn the OpenSSH client's complaint into a message that says what to check."""
    text = stderr.lower()
    where = host.describe()
    if host.proxy_jump and "unknown port 65535" in text:
        # ssh's words when the connection through the jump host could not be made.
        return UnreachableError(
            f"Could not reach {host.hostname} through the jump host {host.proxy_jump}: "
            f"{_first_line(stderr)}",
            hint=f"Check that `ssh {host.proxy_jump}` works on its own (its host key known, "
            f"your key accepted) and that it can reach {host.hostname} port {host.port}.",
        )
    if "could not resolve hostname" in text:
        return UnreachableError(
            f"Cannot resolve the host name '{host.hostname}' (tried {where}).",
            hint="Check the spelling, your DNS, or the HostName in your SSH config.",
        )
    if "timed out" in text:
        return UnreachableError(
            f"No answer from {where} within {timeout} s.",
            hint="Check that the server is up, the address is right, and that a firewall "
            "lets SSH through from this machine.",
        )
    if "connection refused" in text:
        return UnreachableError(
            f"{where} refused the connection: nothing listens for SSH there.",
            hint="Check that sshd runs on the server and the port (--port).",
        )
    if "no route to host" in text or "network is unreachable" in text:
        return UnreachableError(
            f"No network route to {where}.",
            hint="Check the address and this machine's network connection.",
        )
    if "permission denied" in text or "too many authentication failures" in text:
        return UnreachableError(
            f"{where} refused to log in {host.user}: {_last_line(stderr)}",
            hint="Log in with a key the server accepts: --identity FILE, a key loaded in "
            "ssh-agent (ssh-add), or an IdentityFile in ~/.ssh/config. Check with "
            f"`ssh -p {host.port} {host.user}@{host.hostname} true`.",
        )
    return OperationFailedError(
        f"SSH to {where} failed: {_last_line(stderr) or 'no message from ssh'}",
        hint="Run `ssh -v` with the same destination to see why.",
    )


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else ""


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def changed_key_error(stderr: str, host: ResolvedHost) -> ConflictError:
    offered = next(
        (line.strip() for line in stderr.splitlines() if "SHA256:" in line),
        "(ssh did not print the new fingerprint)",
    )
    offending = next(
        (line.strip() for line in stderr.splitlines() if line.startswith("Offending")),
        f"the entry in {host.known_hosts}",
    )
    return ConflictError(
        f"The SSH host key of {host.hostname} has CHANGED since it was trusted; refusing to "
        "connect. Someone may be intercepting the connection, or the server was reinstalled.\n"
        f"{offered}\n{offending}",
        hint="If the server was reinstalled, check the new fingerprint on its console "
        "(`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`), then forget the old key with "
        f"`ssh-keygen -R {_known_hosts_name(host)} -f {host.known_hosts}` and run again.",
    )


def _known_hosts_name(host: ResolvedHost) -> str:
    return host.hostname if host.port == 22 else f"'[{host.hostname}]:{host.port}'"


def parse_fingerprints(text: str) -> list[str]:
    """`ssh-keygen -lf` lines ("256 SHA256:abc host (ED25519)") → "ED25519 SHA256:abc"."""
    prints = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1].startswith("SHA256:"):
            prints.append(f"{parts[-1].strip('()')} {parts[1]}")
    return prints


class SshHost(ShellHost):
    """One host reached through one OpenSSH master connection."""

    def __init__(self, target: SshTarget, *, interactive: bool = False) -> None:
        super().__init__()
        self.target = target
        self.interactive = interactive
        self.resolved = self._resolve()
        self.label = self.resolved.describe()
        # A private directory (0700) for the master's socket: whoever can open the socket can
        # run commands on the host.
        self._socket_dir = Path(tempfile.mkdtemp(prefix="libresh-ssh-"))
        self._socket = self._socket_dir / "master"
        self.trusted_fingerprints: list[str] = []  # keys trusted on first use by this run

    # -- connection ------------------------------------------------------------------------

    def _resolve(self) -> ResolvedHost:
        if self.target.destination.startswith("-") or not self.target.destination.strip():
            # ssh would read it as an option.
            raise BadInputError(
                f"{self.target.destination!r} is not a destination.",
                hint="Give [USER@]HOST, or a Host of your SSH config.",
            )
        if shutil.which("ssh") is None:
            raise PrerequisiteError(
                "The OpenSSH client (`ssh`) is not installed on this machine.",
                hint="Install it (Debian/Ubuntu: apt install openssh-client).",
            )
        args = [*self.target.base_args(), "-G", self.target.destination]
        completed = subprocess.run(args, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise BadInputError(
                f"ssh cannot use the destination {self.target.destination!r}: "
                f"{_last_line(completed.stderr)}",
                hint="Give [USER@]HOST, and check your SSH config file.",
            )
        return parse_ssh_config_dump(completed.stdout)

    def _options(self) -> list[str]:
        options = [
            "-o", f"ControlPath={self._socket}",
            "-o", "StrictHostKeyChecking=yes",
            # Whatever the user's ssh config says: a server must never reach the admin's
            # agent (the keys of every other server) or display.
            "-o", "ForwardAgent=no",
            "-o", "ForwardX11=no",
            "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
            *KEEPALIVE,
        ]  # fmt: skip
        if not self.interactive:
            # Without a person there, ssh must never wait for a passphrase or password.
            options += ["-o", "BatchMode=yes"]
        return options

    def connect(self, decide: HostKeyDecision, *, accept_new: bool = False) -> None:
        """Open the master connection, trusting an unknown host key only when told to."""
        stderr = self._open_master()
        if stderr is None:
            return
        through_jump_failed = "unknown port 65535" in stderr.lower()  # the jump, not the host
        if "host key verification failed" not in stderr.lower() or through_jump_failed:
            raise classify_ssh_failure(stderr, self.resolved, CONNECT_TIMEOUT)
        if "identification has changed" in stderr.lower():
            raise changed_key_error(stderr, self.resolved)
        offered = self._fetch_unknown_key()
        if not accept_new:
            if decide is None:
                raise UnknownHostKeyError(
                    f"The SSH host key of {self.resolved.hostname} is not known yet "
                    f"({', '.join(offered.fingerprints)}), and there is no terminal to ask "
                    "whether to trust it.",
                    hint="Check the fingerprint on the server's console "
                    "(`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`), then run again "
                    "with --accept-new-host-key.",
                )
            if not decide(self.resolved, offered):
                raise BadInputError(
                    f"The host key of {self.resolved.hostname} was not trusted; nothing was done."
                )
        _append_known_hosts(offered)
        self.trusted_fingerprints = offered.fingerprints
        stderr = self._open_master()
        if stderr is not None:
            raise classify_ssh_failure(stderr, self.resolved, CONNECT_TIMEOUT)

    def _open_master(self) -> str | None:
        """Start the master in the background once logged in; None when it is up, else what
        ssh said. stderr goes to a file: the backgrounded master keeps it open, so a pipe would
        never reach end-of-file."""
        args = [
            *self.target.base_args(),
            *self._options(),
            "-o", "ControlMaster=yes",
            # The master ends by itself if libresh is killed before closing it.
            "-o", "ControlPersist=120",
            "-N", "-f",
            self.target.destination,
        ]  # fmt: skip
        with tempfile.TemporaryFile() as errors:
            completed = subprocess.run(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors
            )
            errors.seek(0)
            text = errors.read().decode(errors="replace")
        return None if completed.returncode == 0 else text

    def _fetch_unknown_key(self) -> HostKey:
        """Have OpenSSH record the offered key in a scratch file, with every authentication
        method off: nothing is sent to a host not trusted yet."""
        scratch = self._socket_dir / "offered_keys"
        scratch.unlink(missing_ok=True)
        args = [
            # First: ssh takes the first value given for an option, and this one must win.
            "ssh", "-o", f"UserKnownHostsFile={scratch}",
            *self.target.base_args()[1:],
            "-o", "StrictHostKeyChecking=accept-new",
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
            "-o", "ControlPath=none",
            "-o", "PubkeyAuthentication=no",
            "-o", "PasswordAuthentication=no",
            "-o", "KbdInteractiveAuthentication=no",
            "-o", "GSSAPIAuthentication=no",
            "-o", "HostbasedAuthentication=no",
            self.target.destination, "true",
        ]  # fmt: skip
        completed = subprocess.run(args, capture_output=True, text=True, check=False)
        lines = scratch.read_text() if scratch.exists() else ""
        if not lines.strip():
            raise classify_ssh_failure(completed.stderr, self.resolved, CONNECT_TIMEOUT)
        listed = subprocess.run(
            ["ssh-keygen", "-l", "-f", str(scratch)], capture_output=True, text=True, check=False
        )
        return HostKey(parse_fingerprints(listed.stdout), lines, self.resolved.known_hosts)

    # -- commands --------------------------------------------------------------------------

    def _command(self, words: list[str]) -> list[str]:
        return [
            *self.target.base_args(),
            *self._options(),
            "-o", "ControlMaster=no",
            "-T",
            self.target.destination,
            "--",
            shlex.join(words),
        ]  # fmt: skip

    def _execute(
        self, words: list[str], data: bytes | BinaryIO, timeout: float | None
    ) -> CommandResult:
        if not self._socket.exists():
            # Without its master, ssh would quietly open a second connection: refuse instead.
            raise ConnectionLostError(
                f"The SSH connection to {self.label} is closed.",
                hint="Run the same command again: it goes on from where it stopped.",
            )
        self.round_trips += 1
        result = run_process(self._command(words), data, timeout)
        if result.exit_code == 255 and not self._master_alive():
            raise ConnectionLostError(
                f"The SSH connection to {self.label} was lost "
                f"({_last_line(result.stderr) or 'no message'}).",
                hint="Run the same command again: it checks what is already done and "
                "goes on from there.",
            )
        return result

    def _control(self, operation: str) -> bool:
        """Ask the master (`ssh -O check|exit`); True when it answered."""
        args = [*self.target.base_args(), "-o", f"ControlPath={self._socket}"]
        args += ["-O", operation, self.target.destination]
        return subprocess.run(args, capture_output=True, check=False).returncode == 0

    def _master_alive(self) -> bool:
        return self._control("check")

    def close(self) -> None:
        if self._socket.exists():
            self._control("exit")
        shutil.rmtree(self._socket_dir, ignore_errors=True)


class ConnectionLostError(UnreachableError):
    """The master connection dropped in the middle of a step."""


class UnknownHostKeyError(BadInputError):
    """The host's key is not known, and nobody was there to trust it: a caller that knows
    more (e.g. that libresh trusted a key of this server before) says so by this class."""


def forget_host(known_hosts: Path, address: str) -> None:
    """Remove every key of `address` from a known_hosts file, hashed entries included (what
    `ssh-keygen -R` knows how to do)."""
    if not known_hosts.exists():
        return
    subprocess.run(
        ["ssh-keygen", "-R", address, "-f", str(known_hosts)], capture_output=True, check=False
    )
    Path(f"{known_hosts}.old").unlink(missing_ok=True)  # ssh-keygen's backup


def _append_known_hosts(key: HostKey) -> None:
    path = key.known_hosts
    make_private_dirs(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write(key.known_hosts_lines.rstrip("\n") + "\n")
