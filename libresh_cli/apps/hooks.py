"""Lifecycle hooks: each step is a Job made from the app's main workload (same image, volumes
and environment, its own command), run to completion before the next step starts."""

from __future__ import annotations

import copy
import time
from typing import Any

from libresh_cli.apps.instance import Instance
from libresh_cli.apps.model import HookStep
from libresh_cli.apps.placement import place_with_volumes
from libresh_cli.errors import OperationFailedError
from libresh_cli.kube import readiness
from libresh_cli.kube.client import KubeClient, WaitTimeoutError, wait_for
from libresh_cli.progress import Reporter

HOOK_LABEL = "libresh.dev/hook"
HOOK_STEP_LABEL = "libresh.dev/hook-step"
SEQUENCE_ANNOTATION = "libresh.dev/hook-sequence"
KEEP_FINISHED_SECONDS = 7 * 24 * 3600  # long enough to read the logs of last night's upgrade
Manifest = dict[str, Any]


class HookFailedError(OperationFailedError):
    pass


def main_workload(instance: Instance, objects: list[Manifest]) -> Manifest:
    """The first workload named in health.workloads, else the first Deployment."""
    wanted = [tuple(w.split("/")) for w in instance.app.health.workloads]
    for kind, name in wanted:
        for manifest in objects:
            if (manifest["kind"], manifest["metadata"]["name"]) == (kind, name):
                return manifest
    for manifest in objects:
        if manifest["kind"] == "Deployment":
            return manifest
    raise OperationFailedError(
        f"{instance.app.name} has hooks but no Deployment to run them from.",
        hint="List the workload first in health.workloads.",
    )


def hook_job_name(phase: str, step: HookStep, version: str) -> str:
    return f"hook-{phase.replace('_', '-')}-{step.name}-{version.replace('.', '-')}"[:63]


def hook_pod_spec(step: HookStep, instance: Instance, objects: list[Manifest]) -> Manifest:
    """The pod a step runs in: the main workload's, with only its first container, which runs
    the step's command (no probes, no ports). Also what a scheduled backup's init container
    is made from (libresh_cli/backup/jobs.py)."""
    pod_spec: Manifest = copy.deepcopy(main_workload(instance, objects)["spec"]["template"]["spec"])
    container = pod_spec["containers"][0]
    container["command"] = list(step.command)
    for field in ("args", "readinessProbe", "livenessProbe", "startupProbe", "ports"):
        container.pop(field, None)
    if step.run_as_user is not None:
        container.setdefault("securityContext", {})["runAsUser"] = step.run_as_user
    if not step.mount_volumes:
        container.pop("volumeMounts", None)
        pod_spec.pop("volumes", None)
    pod_spec["containers"] = [container]
    pod_spec["restartPolicy"] = "Never"
    return pod_spec


def scheduled_steps(instance: Instance) -> tuple[HookStep, ...]:
    """The pre_backup steps that also run before scheduled backups (`scheduled: true`)."""
    return tuple(step for step in instance.app.hooks.get("pre_backup", ()) if step.scheduled)


def hook_job(
    phase: str, step: HookStep, instance: Instance, objects: list[Manifest], sequence: int
) -> Manifest:
    pod_spec = hook_pod_spec(step, instance, objects)
    # Only libresh's labels: the workload's selector labels would put this pod behind its
    # Service.
    labels = {**instance.labels(), HOOK_LABEL: phase.replace("_", "-"), HOOK_STEP_LABEL: step.name}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": hook_job_name(phase, step, instance.version.version),
            "namespace": instance.namespace,
            "labels": labels,
            "annotations": {SEQUENCE_ANNOTATION: str(sequence)},
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": step.timeout,
            "ttlSecondsAfterFinished": KEEP_FINISHED_SECONDS,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def run_hooks(
    kube: KubeClient, phase: str, instance: Instance, objects: list[Manifest], reporter: Reporter
) -> list[str]:
    """Run the phase's steps one after the other; returns the Job names, in order."""
    names = []
    for step in instance.app.hooks.get(phase, ()):
        job = hook_job(phase, step, instance, objects, time.time_ns())
        reporter.step(f"Hook {phase}: {step.name} ({instance.version.version})")
        _run_one(kube, job, step)
        reporter.done(f"Hook {phase}: {step.name} ({instance.version.version})")
        names.append(job["metadata"]["name"])
    return names


def _run_one(kube: KubeClient, job: Manifest, step: HookStep) -> None:
    name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
    kube.delete_and_wait("batch/v1", "Job", name, namespace)  # left by an earlier attempt
    kube.apply(place_with_volumes(kube, job))

    poll = kube.poller()

    def finished() -> bool | None:
        current = poll.get("batch/v1", "Job", name, namespace)
        state = readiness.job(current) if current else readiness.Readiness(False, "")
        if state.failed:
            raise HookFailedError(
                f"The hook step {step.name} failed ({state.reason}).",
                hint=f"Its log: kubectl -n {namespace} logs job/{name}",
            )
        return True if state.ready else None

    try:
        wait_for(
            f"the hook step {step.name}",
            finished,
            timeout=step.timeout + 60,
            interval=0.5,
            max_interval=3.0,
        )
    except WaitTimeoutError as error:
        raise HookFailedError(
            f"The hook step {step.name} did not finish in {step.timeout}s.",
            hint=f"Its log: kubectl -n {namespace} logs job/{name}",
        ) from error
