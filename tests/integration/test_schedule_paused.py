"""The backup schedule is off while a run holds an instance's lease (apps/lock.py
backup_schedule_paused): a scheduled backup never starts in the middle of an upgrade or a
restore, and one already running is waited for. On the lab's real API server with its real
CronJob controller."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from libresh_cli.apps.inventory import BACKUP_SCHEDULE
from libresh_cli.apps.lock import (
    PAUSED_BY,
    Holder,
    ScheduledBackupRunningError,
    backup_schedule_paused,
    instance_lock,
)
from libresh_cli.kube.client import KubeClient

CRONJOB = ("batch/v1", "CronJob", BACKUP_SCHEDULE[0])


def _schedule(namespace: str, suspended: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": BACKUP_SCHEDULE[0], "namespace": namespace},
        "spec": {
            "schedule": "0 3 1 1 *",  # never during the test
            "suspend": suspended,
            "jobTemplate": {"spec": {"template": _pod_template()}},
        },
    }


def _pod_template() -> dict[str, Any]:
    return {
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "runner", "image": "docker.io/library/debian:bookworm-slim"}],
        }
    }


def _cronjob(kube: KubeClient, namespace: str) -> dict[str, Any]:
    found = kube.get(*CRONJOB, namespace)
    assert found is not None
    return found


def _suspended(kube: KubeClient, namespace: str) -> bool:
    return bool(_cronjob(kube, namespace)["spec"].get("suspend"))


def _start_scheduled_backup(kube: KubeClient, namespace: str) -> str:
    """A Job of the schedule as the CronJob controller starts one: owned by the CronJob and
    listed in its status.active (the controller writes that list only for Jobs it made, and
    keeps an entry while its Job exists unfinished; waiting for a real firing takes a minute)."""
    owner = _cronjob(kube, namespace)
    job = kube.apply(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": "libresh-backup-nightly",
                "namespace": namespace,
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "CronJob",
                        "name": owner["metadata"]["name"],
                        "uid": owner["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            # Suspended, so it makes no pod: kwok would complete a Job's pod at once, and a
            # finished Job leaves status.active. An unfinished Job is what is being modelled.
            "spec": {"backoffLimit": 0, "suspend": True, "template": _pod_template()},
        }
    )
    reference = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": job["metadata"]["name"],
        "namespace": namespace,
        "uid": job["metadata"]["uid"],
    }
    kube.request(
        "PATCH",
        kube.path_for(*CRONJOB, namespace) + "/status",
        body={"status": {"active": [reference]}},
        content_type="application/merge-patch+json",
    )
    return str(job["metadata"]["name"])


def test_the_schedule_is_off_while_the_lease_is_held_and_back_after(
    kube: KubeClient, namespace: str
) -> None:
    kube.apply(_schedule(namespace))
    with instance_lock(kube, namespace, "upgrade"):
        assert _suspended(kube, namespace)
        annotations = _cronjob(kube, namespace)["metadata"]["annotations"]
        assert annotations[PAUSED_BY].startswith("libresh upgrade by ")
    assert not _suspended(kube, namespace)
    assert PAUSED_BY not in (_cronjob(kube, namespace)["metadata"].get("annotations") or {})


def test_a_schedule_its_owner_suspended_stays_suspended(kube: KubeClient, namespace: str) -> None:
    kube.apply(_schedule(namespace, suspended=True))
    with instance_lock(kube, namespace, "restore"):
        assert _suspended(kube, namespace)
    assert _suspended(kube, namespace)  # not ours to resume


def test_a_pause_left_by_a_killed_run_is_resumed_by_the_next(
    kube: KubeClient, namespace: str
) -> None:
    schedule = _schedule(namespace, suspended=True)
    schedule["metadata"]["annotations"] = {PAUSED_BY: "libresh upgrade by x@gone pid 1 [dead]"}
    kube.apply(schedule)
    with instance_lock(kube, namespace, "backup"):
        assert _suspended(kube, namespace)
    assert not _suspended(kube, namespace)


def test_a_running_scheduled_backup_is_waited_for(kube: KubeClient, namespace: str) -> None:
    kube.apply(_schedule(namespace))
    job = _start_scheduled_backup(kube, namespace)
    finished = threading.Timer(3.0, lambda: kube.delete("batch/v1", "Job", job, namespace))
    started = time.monotonic()
    finished.start()
    try:
        with backup_schedule_paused(kube, namespace, Holder.here("upgrade"), wait=60):
            assert time.monotonic() - started >= 3.0  # not before the backup was over
            assert _suspended(kube, namespace)
    finally:
        finished.cancel()
    assert not _suspended(kube, namespace)


def test_a_backup_that_does_not_finish_stops_the_run_before_any_change(
    kube: KubeClient, namespace: str
) -> None:
    kube.apply(_schedule(namespace))
    _start_scheduled_backup(kube, namespace)
    entered = False
    with (
        pytest.raises(ScheduledBackupRunningError, match="libresh-backup-nightly"),
        backup_schedule_paused(kube, namespace, Holder.here("upgrade"), wait=2),
    ):
        entered = True
    assert not entered
    assert not _suspended(kube, namespace)  # resumed: the next night's backup still runs
