"""Waiting for an instance to be healthy, and noticing early when it will not be."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from libresh_cli.apps.instance import APP_VERSION, INSTANCE
from libresh_cli.errors import OperationFailedError
from libresh_cli.kube import readiness
from libresh_cli.kube.client import KubeClient, WaitTimeoutError, wait_for
from libresh_cli.progress import Reporter

# Waiting reasons that will not fix themselves by waiting longer.
HOPELESS = {"CrashLoopBackOff", "CreateContainerConfigError", "InvalidImageName"}
# ...except a missing Secret or ConfigMap just after the apply that made it: the kubelet reads
# them through its own cache and says CreateContainerConfigError ("secret ... not found")
# until the cache has it, retrying meanwhile (seen on the lab's real node, about one install in
# eight). Hopeless only once the pod is this old.
CONFIG_ERROR_GRACE = timedelta(seconds=60)
# An image the kubelet failed to pull is tried again with a back-off (up to 5 minutes between
# tries): a registry's hiccup passes, but a pod still without its image after this long has a
# reason that will not (no such tag, no route to the registry, Docker Hub's pull limit for
# hours). Waiting on, a Deployment only fails at its progress deadline (10 minutes) saying
# nothing of why, and a StatefulSet never does (seen on the lab's real node, which pulls
# nothing).
IMAGE_PULL_GRACE = timedelta(minutes=5)
IMAGE_PULL_FAILED = {"ErrImagePull", "ImagePullBackOff"}
# A pod the scheduler finds no room for (not enough memory on a small server is the usual
# case) waits until something leaves; during a Recreate upgrade the old pod's resources are
# freed within its grace period, so give it a few minutes before calling it hopeless.
UNSCHEDULABLE_GRACE = timedelta(minutes=3)
# Five restarts is about five minutes of the kubelet's back-off (10 s, 20 s, 40 s, 80 s, 160 s):
# enough for an app that restarts while its database initialises on a slow board.
CRASHES_BEFORE_GIVING_UP = 5
# Upgrading, the database is there already and the new version either starts or fails for
# good: Nextcloud's entrypoint exits once when `occ upgrade` fails, and its liveness probe then
# restarts the Apache it starts anyway (apps/nextcloud/templates/deployment.yaml). Waiting for
# five back-offs there kept the site down about nine minutes before the rollback.
CRASHES_DURING_UPGRADE = 2
# A restart counts toward giving up on a running, not ready container if it ended this lately.
RECENT_RESTART = timedelta(minutes=10)
API_VERSIONS = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "Job": "batch/v1"}


class UnhealthyError(OperationFailedError):
    pass


def failing_pod(
    pods: Sequence[Mapping[str, Any]],
    now: datetime | None = None,
    crashes_allowed: int = CRASHES_BEFORE_GIVING_UP,
) -> str | None:
    """A description of the first pod that is failing for good, with the kubelet's message,
    if any. `now`: the API server's time, to judge a pod's age by. A pod being deleted is
    not failing, whatever its phase: one stopped for a restore, killed at the end of its
    grace period, ends Failed with the same version label as the pod that replaces it."""
    for pod in pods:
        name = pod["metadata"]["name"]
        if pod["metadata"].get("deletionTimestamp"):
            continue
        status = pod.get("status", {})
        if status.get("phase") == "Failed" and not _is_job_pod(pod):
            return f"pod {name} failed"
        unschedulable = _unschedulable(pod)
        if unschedulable is not None and _older_than(pod, now, UNSCHEDULABLE_GRACE):
            return f"pod {name} cannot be scheduled ({unschedulable})"
        for container in _containers(status):
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason", "")
            if _given_up(reason, container, pod, now or datetime.now(UTC), crashes_allowed):
                return _waiting_in(name, container, waiting)
            if _restarted_without_ready(container, crashes_allowed, now or datetime.now(UTC)):
                return (
                    f"pod {name}: container {container.get('name')} restarted "
                    f"{container.get('restartCount')} times without becoming ready"
                    f"{_last_end(container)}"
                )
    return None


def pod_trouble(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the first pod that is not ready is not, as the kubelet or the scheduler says it, or
    None: what a failure or a time-out adds to its message, whether or not it is hopeless."""
    for pod in pods:
        name = pod["metadata"]["name"]
        if pod["metadata"].get("deletionTimestamp"):
            continue
        unschedulable = _unschedulable(pod)
        if unschedulable is not None:
            return f"pod {name} cannot be scheduled ({unschedulable})"
        for container in _containers(pod.get("status", {})):
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") and waiting["reason"] != "PodInitializing":
                return _waiting_in(name, container, waiting)
            if not container.get("ready") and container.get("restartCount"):
                return (
                    f"pod {name}: container {container.get('name')} restarted "
                    f"{container['restartCount']} times{_last_end(container)}"
                )
    return None


def _waiting_in(pod: str, container: Mapping[str, Any], waiting: Mapping[str, Any]) -> str:
    """The waiting state's reason, with the kubelet's message when it gives one."""
    message = f" ({waiting['message']})" if waiting.get("message") else ""
    return f"pod {pod}: container {container.get('name')} is in {waiting.get('reason')}{message}"


def _containers(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Init containers first: a pod whose init container fails never starts the others."""
    return [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]


def _unschedulable(pod: Mapping[str, Any]) -> str | None:
    """The scheduler's message for a pod it found no node for, or None."""
    for condition in pod.get("status", {}).get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            return str(condition.get("message") or "no node fits it")
    return None


def _older_than(pod: Mapping[str, Any], now: datetime | None, age: timedelta) -> bool:
    created = _timestamp(pod["metadata"].get("creationTimestamp"))
    return created is None or (now or datetime.now(UTC)) - created >= age


def _restarted_without_ready(
    container: Mapping[str, Any], crashes_allowed: int, now: datetime
) -> bool:
    """Restarted as often as allowed, the last time lately, and still not ready, whatever its
    state now. A container its liveness probe kills is started again at once while the
    kubelet's back-off is shorter than its stop took, so it is seldom seen waiting in
    CrashLoopBackOff: on the real node a failed Nextcloud upgrade (Apache up, status.php
    saying it needs an upgrade, the probe killing it every minute) was seen in
    CrashLoopBackOff only at its fourth restart, two minutes after its second. Restarts long
    ago (a pod that has run for months) say nothing of now."""
    if int(container.get("restartCount", 0)) < crashes_allowed or container.get("ready"):
        return False
    ended = ((container.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
    finished = _timestamp(ended)
    return finished is not None and now - finished <= RECENT_RESTART


def _last_end(container: Mapping[str, Any]) -> str:
    """How the container's previous run ended, as the kubelet says it."""
    ended = (container.get("lastState") or {}).get("terminated") or {}
    if not ended:
        return ""
    return f" (last run: {ended.get('reason', 'ended')}, exit code {ended.get('exitCode', '?')})"


def _given_up(
    reason: str,
    container: Mapping[str, Any],
    pod: Mapping[str, Any],
    now: datetime,
    crashes_allowed: int,
) -> bool:
    if reason in IMAGE_PULL_FAILED:
        return _older_than(pod, now, IMAGE_PULL_GRACE)
    if reason not in HOPELESS:
        return False
    if reason == "CrashLoopBackOff":
        return int(container.get("restartCount", 0)) >= crashes_allowed
    if reason == "CreateContainerConfigError":
        return _older_than(pod, now, CONFIG_ERROR_GRACE)
    return True


def _timestamp(value: Any) -> datetime | None:
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _is_job_pod(pod: Mapping[str, Any]) -> bool:
    return any(o.get("kind") == "Job" for o in pod["metadata"].get("ownerReferences", []) or [])


def wait_healthy(
    kube: KubeClient,
    namespace: str,
    workloads: list[tuple[str, str]],
    version: str,
    timeout: float,
    reporter: Reporter,
    crashes_allowed: int = CRASHES_BEFORE_GIVING_UP,
) -> None:
    """Until every workload is ready; fails once a pod of `version` has crashed
    `crashes_allowed` times."""

    poll = kube.poller()
    selector = f"{INSTANCE}={namespace},{APP_VERSION}={version}"
    last_pods: list[Mapping[str, Any]] = []

    def probe() -> bool | None:
        pods = poll.list("v1", "Pod", namespace, label_selector=selector)
        last_pods[:] = pods
        waiting = []
        for kind, name in workloads:
            current = poll.get(API_VERSIONS[kind], kind, name, namespace)
            state = (
                readiness.readiness(current)
                if current
                else readiness.Readiness(False, "not created yet")
            )
            if state.failed:
                raise UnhealthyError(
                    f"{kind}/{name} failed: {state.reason}{_because(pods)}.",
                    hint=f"Look at its pods: kubectl -n {namespace} get pods",
                )
            if not state.ready:
                waiting.append(f"{kind}/{name} ({state.reason})")
        failure = failing_pod(pods, kube.server_now(), crashes_allowed)
        if failure:
            raise UnhealthyError(f"{failure}.", hint=_look_at(namespace, failure))
        if waiting:
            reporter.step(f"Waiting for {', '.join(waiting)}")
            return None
        return True

    try:
        wait_for(
            f"{namespace} to be healthy", probe, timeout=timeout, interval=0.5, max_interval=3.0
        )
    except WaitTimeoutError as error:
        raise UnhealthyError(
            f"{namespace} did not become healthy within {timeout:.0f}s{_because(last_pods)}.",
            hint=f"Look at its pods: kubectl -n {namespace} get pods",
        ) from error


def _because(pods: Sequence[Mapping[str, Any]]) -> str:
    trouble = pod_trouble(pods)
    return f": {trouble}" if trouble else ""


def _look_at(namespace: str, failure: str) -> str:
    """Where to look next: the pod's log, or, for one that never started, its events."""
    pod = failure.split()[1].rstrip(":")
    if "cannot be scheduled" in failure or "Image" in failure:
        return f"See its events: kubectl -n {namespace} describe pod {pod}"
    return f"See its log: kubectl -n {namespace} logs {pod}"
