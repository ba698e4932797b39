"""One run at a time per instance, and runs that survive what happens to them, on the lab's
real API server: two `libresh upgrade` at once (the Lease), Ctrl-C in an upgrade (rolled
back), a run killed mid-step (the next run restores the step's backup first), two writers of
one record (compare and swap), and the API server restarted under an install (retries).

The demo app's 4.0.0 never becomes ready (the lab's fail label): an upgrade to it spends its
whole health timeout (30 s) waiting, which is the window these tests act in."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from libresh_cli.apps.lifecycle import install, plan_install
from libresh_cli.apps.lock import (
    LEASE_API,
    LEASE_NAME,
    MICROTIME,
    InstanceBusyError,
    InstanceLease,
    instance_lock,
)
from libresh_cli.apps.params import GivenValues
from libresh_cli.apps.record import read_record, require_record, save_record
from libresh_cli.apps.upgrade import UpgradeFailedError, plan_upgrade, upgrade
from libresh_cli.errors import ConflictError, ExitCode, InterruptedRunError
from libresh_cli.kube.client import KubeClient, wait_for
from libresh_cli.lab import state
from libresh_cli.lab.processes import start_daemon
from libresh_cli.progress import SilentReporter
from tests.integration.conftest import Lab
from tests.integration.test_apps import LIBRESH, TEST_CATALOG, libresh
from tests.integration.test_upgrade_safeguard import CATALOG, RecordingSafeguard


def _install_demo(kube: KubeClient, name: str, version: str) -> None:
    given = GivenValues()
    given.add("domain", f"{name}.example.org", "--domain")
    install(kube, plan_install(kube, CATALOG, "demo", name, given, version, None), SilentReporter())


@pytest.fixture
def demo(kube: KubeClient) -> Iterator[str]:
    name = f"l{uuid.uuid4().hex[:8]}"
    _install_demo(kube, name, "3.0.0")
    yield name
    kube.delete("v1", "Namespace", name)


def _start(lab: Lab, *args: str) -> subprocess.Popen[str]:
    command = [LIBRESH, "--kubeconfig", str(lab.kubeconfig), "--catalog", str(TEST_CATALOG)]
    return subprocess.Popen(
        [*command, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**lab.cli_env(), "COLUMNS": "200"},
    )


def _lease_of(kube: KubeClient, name: str) -> dict[str, object] | None:
    return kube.get(LEASE_API, "Lease", LEASE_NAME, name)


def _wait_lease(kube: KubeClient, name: str) -> dict[str, object]:
    return wait_for(f"the lease of {name}", lambda: _lease_of(kube, name), timeout=30, interval=0.1)


def _image(kube: KubeClient, name: str) -> str:
    deployment = kube.get("apps/v1", "Deployment", "demo", name)
    assert deployment is not None
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


def test_two_upgrades_at_once_the_second_is_refused_naming_the_first(
    lab: Lab, kube: KubeClient
) -> None:
    demo = f"l{uuid.uuid4().hex[:8]}"
    _install_demo(kube, demo, "1.0.0")  # four steps to 4.0.0: a run that lasts
    first = _start(lab, "upgrade", demo, "--to", "4.0.0", "--no-backup", "--yes")
    try:
        lease = _wait_lease(kube, demo)
        second = libresh(lab, "upgrade", demo, "--no-backup", "--yes")
        assert first.poll() is None, "the first run ended before the second started"
    finally:
        out, err = first.communicate(timeout=300)
    assert second.returncode == ExitCode.CONFLICT, second.stdout + second.stderr
    assert f"{demo} is busy" in second.stderr
    assert "`libresh upgrade` by" in second.stderr
    assert f"pid {first.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    assert f"pid {first.pid}" in str(lease["spec"]["holderIdentity"])
    # The first went on with its work (4.0.0 is broken: tried, then rolled back) and let go.
    assert first.returncode == 1, out + err
    assert "rolled back to 3.0.0" in err
    assert _lease_of(kube, demo) is None
    assert _image(kube, demo) == "example.org/demo:3.0.0"
    kube.delete("v1", "Namespace", demo)


def test_ctrl_c_in_an_upgrade_rolls_the_step_back(lab: Lab, kube: KubeClient, demo: str) -> None:
    run = _start(lab, "upgrade", demo, "--to", "4.0.0", "--no-backup", "--yes")
    _wait_lease(kube, demo)
    wait_for(
        "the step to start",
        lambda: True if (require_record(kube, demo).status == "upgrading") else None,
        timeout=30,
        interval=0.1,
    )
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=300)
    assert run.returncode == ExitCode.INTERRUPTED, out + err
    assert f"Upgrading {demo} to 4.0.0 was interrupted; it was rolled back to 3.0.0" in err
    assert "Traceback" not in err
    record = require_record(kube, demo)
    assert (record.status, record.version, record.pending_upgrade) == ("installed", "3.0.0", None)
    assert record.history[-1].result == "rolled-back"
    assert _image(kube, demo) == "example.org/demo:3.0.0"
    assert _lease_of(kube, demo) is None


class DiesWhileApplying(SilentReporter):
    """A run killed in the middle of a step: nothing after this point runs, no handler."""

    def step(self, message: str) -> None:
        if message.startswith("Applying"):
            raise SystemExit("killed")


def killed_mid_step(kube: KubeClient, demo: str, safeguard: RecordingSafeguard) -> None:
    """An upgrade of `demo` from 3.0.0 to 4.0.0 whose run dies while applying the step."""
    with pytest.raises(SystemExit):
        upgrade(kube, plan_upgrade(kube, CATALOG, demo, "4.0.0"), safeguard, DiesWhileApplying())


def test_a_killed_step_is_rolled_back_from_its_backup_by_the_next_run(
    kube: KubeClient, demo: str
) -> None:
    killed_mid_step(kube, demo, RecordingSafeguard())
    record = require_record(kube, demo)
    assert record.status == "upgrading"
    assert record.pending_upgrade == {
        "from": "3.0.0",
        "to": "4.0.0",
        "backup": "snapshot-before-4.0.0",
    }

    # The next run (nightly cron: the newest version is still 4.0.0) first brings back the
    # step's backup, not a new backup of half-migrated data; then it tries the step again.
    nightly = RecordingSafeguard()
    plan = plan_upgrade(kube, CATALOG, demo, None)
    assert plan.describe()[0] == "roll back the interrupted 3.0.0 -> 4.0.0"
    with pytest.raises(UpgradeFailedError, match=r"to 4\.0\.0 failed"):  # 4.0.0 is broken
        upgrade(kube, plan, nightly, SilentReporter())
    assert nightly.calls[0] == ("restore", "snapshot-before-4.0.0")
    assert nightly.calls[1] == ("before", "3.0.0", "4.0.0")
    record = require_record(kube, demo)
    assert (record.status, record.version, record.pending_upgrade) == ("installed", "3.0.0", None)
    assert [h.result for h in record.history[-2:]] == ["rolled-back", "rolled-back"]


def test_a_killed_step_without_a_backup_is_not_upgraded_further(
    lab: Lab, kube: KubeClient, demo: str
) -> None:
    killed_mid_step(kube, demo, NoBackup())
    refused = libresh(lab, "upgrade", demo, "--no-backup", "--yes")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "did not finish, and no backup was taken before it" in refused.stderr
    assert f"libresh restore {demo} --snapshot ID" in refused.stderr
    assert require_record(kube, demo).status == "upgrading"


class NoBackup(RecordingSafeguard):
    def before_step(self, instance: str, version_from: str, version_to: str) -> str | None:
        return None


def test_interrupted_service_call_rolls_back_and_says_so(kube: KubeClient, demo: str) -> None:
    class InterruptedWhileApplying(SilentReporter):
        def step(self, message: str) -> None:
            if message.startswith("Applying") and not self.__dict__.get("fired"):
                self.__dict__["fired"] = True
                raise KeyboardInterrupt

    safeguard = RecordingSafeguard()
    with pytest.raises(InterruptedRunError, match=r"rolled back to 3\.0\.0") as raised:
        upgrade(
            kube,
            plan_upgrade(kube, CATALOG, demo, "4.0.0"),
            safeguard,
            InterruptedWhileApplying(),
        )
    assert "restored from the backup snapshot-before-4.0.0" in raised.value.message
    assert safeguard.calls[-1] == ("restore", "snapshot-before-4.0.0")


def test_the_record_is_written_only_over_what_was_read(kube: KubeClient, demo: str) -> None:
    mine = require_record(kube, demo)
    theirs = require_record(kube, demo)
    theirs.last_error = "written by another run"
    save_record(kube, theirs)
    mine.last_error = "stale view"
    with pytest.raises(ConflictError, match="changed by someone else"):
        save_record(kube, mine)
    assert require_record(kube, demo).last_error == "written by another run"
    save_record(kube, theirs)  # the writer keeps the version it wrote: it may write again


def test_a_lease_is_refused_while_held_and_taken_over_once_stale(
    kube: KubeClient, demo: str
) -> None:
    with instance_lock(kube, demo, "backup") as held:
        with pytest.raises(InstanceBusyError, match=r"`libresh backup` by .* \(pid \d+\)"):
            InstanceLease(kube, demo, held.holder.__class__.here("upgrade")).acquire()
        # Renewing moves renewTime on and keeps the lease.
        before = _lease_of(kube, demo)
        held.renew()
        after = _lease_of(kube, demo)
        assert before and after
        assert after["spec"]["renewTime"] >= before["spec"]["renewTime"]
    assert _lease_of(kube, demo) is None  # released

    # A run that died holding it: not renewed for longer than its duration.
    dead = InstanceLease(kube, demo, held.holder.__class__.here("upgrade"))
    dead.acquire()
    lease = _lease_of(kube, demo)
    assert lease is not None
    old = (datetime.now(UTC) - timedelta(minutes=5)).strftime(MICROTIME)
    lease["spec"] = {**lease["spec"], "renewTime": old}  # type: ignore[dict-item]
    kube.replace(lease)
    with instance_lock(kube, demo, "upgrade") as taken:
        assert "upgrade" in taken.holder.identity()
        # The dead run, should it wake up, finds its lease gone and stops.
        dead.renew()
        assert dead.lost
        with pytest.raises(ConflictError, match=r"lease on .* was lost"):
            dead.check()


def _restart_apiserver(lab: Lab) -> None:
    """Kill the lab's kube-apiserver and start it again with the same command line, as k3s
    restarting itself (an upgrade of k3s) does to a run in progress."""
    lab_state = state.load_state(lab.paths, "pytest")
    assert lab_state is not None
    record = next(p for p in lab_state.processes if p.component == "kube-apiserver")
    proc = Path(f"/proc/{record.pid}")
    argv = [part.decode() for part in (proc / "cmdline").read_bytes().split(b"\0") if part]
    environ = (proc / "environ").read_bytes().split(b"\0")
    env = dict(part.decode().split("=", 1) for part in environ if b"=" in part)
    os.kill(record.pid, signal.SIGKILL)
    wait_for("the old API server to exit", lambda: _gone(record.pid), timeout=30, interval=0.1)
    time.sleep(1)  # a restart takes a moment: requests in this window are refused
    started = start_daemon("kube-apiserver", argv, lab.paths.state / "apiserver-restart.log", env)
    lab_state.processes = [p if p is not record else started for p in lab_state.processes]
    state.save_state(lab.paths, lab_state)


def _gone(pid: int) -> bool | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return True if stat.split(") ", 1)[1].startswith("Z") else None


def test_an_install_goes_on_through_an_api_server_restart(lab: Lab, kube: KubeClient) -> None:
    name = f"r{uuid.uuid4().hex[:8]}"
    run = _start(
        lab,
        "-vv",
        "install",
        "demo",
        "--name",
        name,
        "--domain",
        "r.example.org",
        "--version",
        "3.0.0",
        "--yes",
    )
    try:
        wait_for("the install to start", lambda: read_record(kube, name), timeout=60, interval=0.05)
        assert run.poll() is None, "the install ended before the restart"
        _restart_apiserver(lab)
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, out + err
        assert "Error; again in" in err  # it did meet the restart, and waited
        with lab.kube() as fresh:
            record = require_record(fresh, name)
            assert record.status == "installed"
    finally:
        with lab.kube() as fresh:
            fresh.delete("v1", "Namespace", name)
