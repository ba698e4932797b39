"""A person at a terminal: `libresh install` asks for what is missing (checking the answer)
and for confirmation. The real command runs under a pseudo-terminal; the test types."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import sys
import termios
import time
import uuid
from pathlib import Path

from libresh_cli.kube.client import KubeClient
from tests.integration.conftest import Lab

LIBRESH = str(Path(sys.executable).parent / "libresh")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CURSOR_POSITION_REQUEST = b"\x1b[6n"
TEST_CATALOG = Path(__file__).resolve().parents[1] / "fixtures" / "catalog"


class Terminal:
    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: becomes libresh, with the pty as its terminal
            os.execve(argv[0], argv, env)  # noqa: S606 - exec of our own command, no shell
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
        self.seen = b""

    def expect(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.screen():
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{text!r} never appeared; the screen had:\n{self.screen()}"
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready and not self._read():
                break

    def _read(self) -> bool:
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:  # the child closed the terminal
            return False
        if CURSOR_POSITION_REQUEST in chunk:  # answer as a terminal would
            os.write(self.fd, b"\x1b[1;1R")
        self.seen += chunk
        return True

    def type(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def exit_code(self, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                self._read()
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
        raise AssertionError(f"libresh did not finish; the screen had:\n{self.screen()}")

    def screen(self) -> str:
        """What was printed, without the terminal's control sequences."""
        return ANSI.sub("", self.seen.decode(errors="replace"))


def install_demo(lab: Lab, name: str, *extra: str) -> Terminal:
    """`libresh install demo --name NAME --version 3.0.0 [EXTRA…]` at a terminal."""
    argv = [
        LIBRESH,
        "--kubeconfig",
        str(lab.kubeconfig),
        "--catalog",
        str(TEST_CATALOG),
        "install",
        "demo",
        "--name",
        name,
        "--version",
        "3.0.0",
        *extra,
    ]
    return Terminal(argv, {**lab.cli_env(), "TERM": "xterm"})


def test_install_asks_for_the_domain_checks_it_and_asks_to_confirm(
    lab: Lab, kube: KubeClient
) -> None:
    name = f"p{uuid.uuid4().hex[:8]}"
    terminal = install_demo(lab, name)
    try:
        terminal.expect("? Domain")  # the demo app's prompt text
        terminal.type("not a domain\r")
        terminal.expect("expected a domain name such as cloud.example.org")
        terminal.type("\x15" + "demo.example.org\r")  # Ctrl-U clears the line first
        terminal.expect("Install demo 3.0.0 as")
        terminal.type("y")
        terminal.type("\r")
        assert terminal.exit_code() == 0, terminal.screen()
        assert "is installed and healthy at https://demo.example.org" in terminal.screen()
        record = kube.get("v1", "ConfigMap", "libresh-instance", name)
        assert record is not None and "demo.example.org" in record["data"]["record.json"]
    finally:
        kube.delete("v1", "Namespace", name)


def test_answering_no_changes_nothing(lab: Lab, kube: KubeClient) -> None:
    name = f"n{uuid.uuid4().hex[:8]}"
    argv = [
        LIBRESH,
        "--kubeconfig",
        str(lab.kubeconfig),
        "--catalog",
        str(TEST_CATALOG),
        "install",
        "demo",
        "--name",
        name,
        "--version",
        "3.0.0",
        "--domain",
        "demo.example.org",
    ]
    terminal = Terminal(argv, {**lab.cli_env(), "TERM": "xterm"})
    terminal.expect("Install demo 3.0.0 as")
    terminal.type("n")
    terminal.type("\r")
    assert terminal.exit_code() == 1
    assert kube.get("v1", "Namespace", name) is None


def test_a_confirmation_waits_for_enter(lab: Lab, kube: KubeClient) -> None:
    """One key does not answer: `n` then Enter typed for one question must not answer the
    next one too (issue 20, point 4)."""
    name = f"e{uuid.uuid4().hex[:8]}"
    terminal = install_demo(lab, name, "--domain", "enter.example.org")
    terminal.expect("Install demo 3.0.0 as")
    terminal.type("n")
    time.sleep(1.5)
    assert os.waitpid(terminal.pid, os.WNOHANG) == (0, 0), "answered without Enter"
    terminal.type("\r")
    assert terminal.exit_code() == 1
    assert kube.get("v1", "Namespace", name) is None


def test_purging_an_instance_asks_for_its_name(lab: Lab, kube: KubeClient) -> None:
    name = f"u{uuid.uuid4().hex[:8]}"
    installed = install_demo(lab, name, "--domain", "purge.example.org", "--yes")
    assert installed.exit_code() == 0, installed.screen()
    try:
        argv = [LIBRESH, "--kubeconfig", str(lab.kubeconfig), "uninstall", name, "--purge-data"]
        terminal = Terminal(argv, {**lab.cli_env(), "TERM": "xterm"})
        terminal.expect(f"Type {name} to confirm")
        terminal.type("y\r")
        assert terminal.exit_code() == 1
        assert "Not confirmed: nothing was changed." in terminal.screen()
        assert kube.get("v1", "ConfigMap", "libresh-instance", name) is not None

        terminal = Terminal(argv, {**lab.cli_env(), "TERM": "xterm"})
        terminal.expect(f"Type {name} to confirm")
        terminal.type(f"{name}\r")
        assert terminal.exit_code() == 0, terminal.screen()
        assert "purged" in terminal.screen()
    finally:
        kube.delete("v1", "Namespace", name)


def test_declining_an_upgrade_exits_1_as_declining_an_install_does(
    lab: Lab, kube: KubeClient
) -> None:
    name = f"g{uuid.uuid4().hex[:8]}"
    installed = install_demo(lab, name, "--domain", "decline.example.org", "--yes")
    assert installed.exit_code() == 0, installed.screen()
    try:
        argv = [LIBRESH, "--kubeconfig", str(lab.kubeconfig), "--catalog", str(TEST_CATALOG)]
        terminal = Terminal(
            [*argv, "upgrade", name, "--to", "4.0.0", "--no-backup"],
            {**lab.cli_env(), "TERM": "xterm"},
        )
        terminal.expect(f"Upgrade {name}: 3.0.0 -> 4.0.0?")
        terminal.type("n\r")
        assert terminal.exit_code() == 1, terminal.screen()
        assert "skipped" in terminal.screen()
    finally:
        kube.delete("v1", "Namespace", name)
