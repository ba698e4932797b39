"""`libresh lab` as a person runs it: the installed command in a subprocess, real daemons."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from libresh_cli.errors import ExitCode
from libresh_cli.kube.client import wait_for
from libresh_cli.lab.processes import ProcessRecord, is_alive
from tests.integration.conftest import Lab

LIBRESH = str(Path(sys.executable).parent / "libresh")


def libresh(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LIBRESH, *args], env=env, capture_output=True, text=True, check=False, timeout=300
    )


def records(state_home: Path, name: str) -> list[ProcessRecord]:
    data = json.loads((state_home / "libresh" / "lab" / name / "lab.json").read_text())
    return [ProcessRecord.from_dict(p) for p in data["processes"]]


@pytest.fixture
def own_state(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A private XDG_STATE_HOME for labs started by a test; whatever is left is taken down."""
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "NO_COLOR": "1"}
    yield env
    libresh("lab", "down", "--all", env=env)


def test_status_and_kubeconfig_of_the_running_lab(lab: Lab) -> None:
    env = lab.cli_env()
    shown = libresh("lab", "status", "--name", "pytest", "-o", "json", env=env)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["health"] == "running" and status["nodes_ready"] == 2
    assert set(status["processes"]) == {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    }
    path = libresh("lab", "kubeconfig", "--name", "pytest", env=env).stdout.strip()
    assert Path(path) == lab.kubeconfig
    assert stat.S_IMODE(lab.kubeconfig.stat().st_mode) == 0o600


def test_up_again_as_asked_is_a_no_op_and_otherwise_refused(lab: Lab) -> None:
    again = libresh("lab", "up", "--name", "pytest", "--nodes", "2", env=lab.cli_env())
    assert again.returncode == 0, again.stderr
    assert f"Lab 'pytest' is already running at {lab.state.server}; nothing to do" in (again.stderr)
    assert all(is_alive(r) for r in lab.state.processes)  # untouched
    other = libresh("lab", "up", "--name", "pytest", "--nodes", "3", env=lab.cli_env())
    assert other.returncode == ExitCode.CONFLICT
    assert "A lab named 'pytest' is already running, with 2 node(s)" in other.stderr
    assert "libresh lab down --name pytest" in other.stderr


def test_a_taken_api_port_is_refused_before_anything_starts(
    lab: Lab, own_state: dict[str, str]
) -> None:
    taken = str(lab.state.api_port)
    refused = libresh("lab", "up", "--name", "other", "--api-port", taken, env=own_state)
    assert refused.returncode == ExitCode.CONFLICT
    assert f"Port {taken} on 127.0.0.1" in refused.stderr and "--api-port" in refused.stderr
    assert not (Path(own_state["XDG_STATE_HOME"]) / "libresh" / "lab" / "other").exists()


def test_a_crashed_lab_is_reported_then_cleaned_up_by_the_next_up(
    own_state: dict[str, str],
) -> None:
    state_home = Path(own_state["XDG_STATE_HOME"])
    started = libresh("lab", "up", "--name", "crashy", env=own_state)
    assert started.returncode == 0, started.stderr
    first = records(state_home, "crashy")
    apiserver = next(r for r in first if r.component == "kube-apiserver")
    os.kill(apiserver.pid, signal.SIGKILL)
    wait_for("the apiserver to die", lambda: True if not is_alive(apiserver) else None, timeout=10)

    degraded = libresh("lab", "status", "--name", "crashy", env=own_state)
    assert degraded.returncode == 1
    assert "degraded" in degraded.stdout and "kube-apiserver DOWN" in degraded.stdout

    again = libresh("lab", "up", "--name", "crashy", env=own_state)
    assert again.returncode == 0, again.stderr
    assert "Cleaned up the remains of an earlier lab 'crashy'" in again.stderr
    assert not any(is_alive(r) for r in first)  # the survivors of the crash were stopped
    second = records(state_home, "crashy")
    assert all(is_alive(r) for r in second)

    down = libresh("lab", "down", "--name", "crashy", env=own_state)
    assert down.returncode == 0
    assert not any(is_alive(r) for r in second)
    assert not (state_home / "libresh" / "lab" / "crashy").exists()


def test_an_interrupted_up_leaves_nothing_behind(own_state: dict[str, str]) -> None:
    state_home = Path(own_state["XDG_STATE_HOME"])
    state_file = state_home / "libresh" / "lab" / "intr" / "lab.json"
    process = subprocess.Popen(
        [LIBRESH, "lab", "up", "--name", "intr"],
        env=own_state,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def apiserver_started() -> list[ProcessRecord] | None:
        try:
            found = records(state_home, "intr")
        except (OSError, ValueError):
            return None
        return found if any(r.component == "kube-apiserver" for r in found) else None

    started = wait_for(
        "the apiserver to be started",
        apiserver_started,
        timeout=60,
        interval=0.02,
        max_interval=0.05,
    )
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == ExitCode.INTERRUPTED, err
    assert "Interrupted" in err
    assert not any(is_alive(r) for r in started)
    assert not state_file.parent.exists()


def test_down_of_a_lab_that_is_not_there_is_a_no_op(own_state: dict[str, str]) -> None:
    result = libresh("lab", "down", "--name", "ghost", env=own_state)
    assert result.returncode == 0
    assert "nothing to do" in result.stderr


def test_lab_up_with_cached_binaries_does_not_rebuild(own_state: dict[str, str]) -> None:
    """The cached path starts the lab without building (its speed is benchmarks/startup.py's)."""
    result = libresh("lab", "up", "--name", "quick", "--nodes", "3", env=own_state)
    assert result.returncode == 0, result.stderr
    assert "Building" not in result.stderr
    assert "3 simulated node(s) ready" in result.stderr


def test_etcd_takes_only_clients_with_a_certificate_of_the_lab(lab: Lab) -> None:
    """Loopback is shared with every local user: plain HTTP and TLS without a client
    certificate get nothing from the lab's etcd (issue 14, finding 19)."""
    import ssl

    import httpx

    from libresh_cli.lab.cluster import ssl_context_for
    from libresh_cli.lab.pki import LabPki
    from libresh_cli.lab.state import lab_dir

    pki = LabPki(lab_dir(lab.paths, "pytest") / "pki")
    health = f"https://127.0.0.1:{lab.state.etcd_port}/health"
    with pytest.raises(httpx.HTTPError):
        httpx.get(health.replace("https://", "http://"), timeout=3.0)
    anonymous = ssl.create_default_context(cafile=str(pki.ca_cert))
    with pytest.raises(httpx.HTTPError):
        httpx.get(health, timeout=3.0, verify=anonymous)
    answered = httpx.get(health, timeout=3.0, verify=ssl_context_for(pki))
    assert answered.status_code == 200 and '"true"' in answered.text
