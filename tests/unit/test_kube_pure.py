"""Pure parts of the kube adapter: discovery parsing (captured from a real v1.34.4 API server),
apply ordering, readiness of objects as the API returns them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from libresh_cli.errors import LibreshError
from libresh_cli.kube import readiness
from libresh_cli.kube.client import (
    WaitTimeoutError,
    api_prefix,
    apply_rank,
    parse_aggregated_discovery,
    wait_for,
)

FIXTURES = Path(__file__).parent.parent / "fixtures"


def _discovery(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / f"discovery-{name}-v1.34.4.json").read_text())
    return document


def test_core_group_discovery() -> None:
    types = parse_aggregated_discovery(_discovery("api"))
    pod = types[("v1", "Pod")]
    assert (pod.plural, pod.namespaced) == ("pods", True)
    node = types[("v1", "Node")]
    assert (node.plural, node.namespaced) == ("nodes", False)
    assert types[("v1", "Namespace")].namespaced is False
    # subresources (pods/status, pods/log…) are not kinds of their own
    assert all("/" not in t.plural for t in types.values())


def test_named_groups_discovery() -> None:
    types = parse_aggregated_discovery(_discovery("apis"))
    assert types[("apps/v1", "Deployment")].plural == "deployments"
    assert types[("networking.k8s.io/v1", "Ingress")].namespaced is True
    crd = types[("apiextensions.k8s.io/v1", "CustomResourceDefinition")]
    assert (crd.plural, crd.namespaced) == ("customresourcedefinitions", False)
    assert types[("storage.k8s.io/v1", "StorageClass")].namespaced is False
    assert types[("batch/v1", "CronJob")].plural == "cronjobs"


def test_discovery_refuses_a_server_without_aggregated_discovery() -> None:
    with pytest.raises(LibreshError, match="aggregated discovery"):
        parse_aggregated_discovery({"kind": "APIGroupList", "groups": []})


def test_api_prefix() -> None:
    assert api_prefix("v1") == "/api/v1"
    assert api_prefix("apps/v1") == "/apis/apps/v1"


def test_apply_order_puts_dependencies_first() -> None:
    manifests = [
        {"apiVersion": "example.org/v1", "kind": "Widget"},
        {"apiVersion": "apps/v1", "kind": "Deployment"},
        {"apiVersion": "v1", "kind": "Secret"},
        {"apiVersion": "v1", "kind": "Namespace"},
        {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition"},
        {"apiVersion": "v1", "kind": "Service"},
    ]
    ordered = [m["kind"] for m in sorted(manifests, key=apply_rank)]
    assert ordered == [
        "CustomResourceDefinition",
        "Namespace",
        "Secret",
        "Service",
        "Deployment",
        "Widget",
    ]


def test_wait_for_returns_the_first_answer_and_times_out() -> None:
    answers = iter([None, None, "ok"])
    assert wait_for("x", lambda: next(answers), timeout=5, sleep=lambda _: None) == "ok"

    now = [0.0]

    def tick(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(WaitTimeoutError, match="waiting for the thing"):
        wait_for("the thing", lambda: None, timeout=3, clock=lambda: now[0], sleep=tick)
    assert now[0] >= 3


def _deployment(**status: Any) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"generation": 2},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 2, **status},
    }


def test_deployment_readiness() -> None:
    ready = _deployment(replicas=2, updatedReplicas=2, availableReplicas=2)
    assert readiness.readiness(ready).ready
    rolling = _deployment(replicas=3, updatedReplicas=2, availableReplicas=2)
    assert readiness.readiness(rolling) == readiness.Readiness(
        False, "1 old replicas pending termination"
    )
    stale = {**ready, "status": {**ready["status"], "observedGeneration": 1}}
    assert not readiness.readiness(stale).ready
    stuck = _deployment(
        replicas=2,
        updatedReplicas=2,
        availableReplicas=0,
        conditions=[
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        ],
    )
    assert readiness.readiness(stuck).failed


def test_statefulset_job_pod_node_pvc_readiness() -> None:
    sts: dict[str, Any] = {
        "kind": "StatefulSet",
        "spec": {"replicas": 1},
        "metadata": {"generation": 1},
        "status": {
            "observedGeneration": 1,
            "readyReplicas": 1,
            "currentRevision": "a",
            "updateRevision": "a",
        },
    }
    assert readiness.readiness(sts).ready
    sts_updating = {**sts, "status": {**sts["status"], "updateRevision": "b"}}
    assert not readiness.readiness(sts_updating).ready
    done = {"kind": "Job", "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    failed = {
        "kind": "Job",
        "status": {
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]
        },
    }
    assert readiness.readiness(done).ready
    assert readiness.readiness(failed).failed
    crashing = {
        "kind": "Pod",
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]},
    }
    assert readiness.readiness(crashing) == readiness.Readiness(False, "pod running, not ready")
    assert readiness.readiness({"kind": "Pod", "status": {"phase": "Failed"}}).failed
    node = {"kind": "Node", "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert readiness.readiness(node).ready
    pvc = {"kind": "PersistentVolumeClaim", "status": {"phase": "Pending"}}
    assert not readiness.readiness(pvc).ready
    assert readiness.readiness({"kind": "ConfigMap"}).ready


def test_a_pod_is_given_up_on_only_after_repeated_crashes() -> None:
    from libresh_cli.apps.health import CRASHES_BEFORE_GIVING_UP, failing_pod

    def pod(restarts: int, reason: str = "CrashLoopBackOff") -> dict[str, Any]:
        return {
            "metadata": {"name": "web-1"},
            "status": {
                "phase": "Running",
                "containerStatuses": [
                    {
                        "name": "web",
                        "restartCount": restarts,
                        "state": {"waiting": {"reason": reason}},
                    }
                ],
            },
        }

    assert failing_pod([pod(CRASHES_BEFORE_GIVING_UP - 1)]) is None  # may still come up
    assert failing_pod([pod(CRASHES_BEFORE_GIVING_UP)]) == (
        "pod web-1: container web is in CrashLoopBackOff"
    )
    # A Secret the kubelet has not seen yet: given a minute (it retries), then hopeless, with
    # the kubelet's message.
    now = datetime(2026, 12, 2, 3, 0, 0, tzinfo=UTC)
    fresh = pod(0, "CreateContainerConfigError")
    fresh["metadata"]["creationTimestamp"] = "2026-12-02T02:59:30Z"
    fresh["status"]["containerStatuses"][0]["state"]["waiting"]["message"] = (
        'secret "libresh-redis" not found'
    )
    assert failing_pod([fresh], now) is None
    assert failing_pod([fresh], now + timedelta(seconds=31)) == (
        'pod web-1: container web is in CreateContainerConfigError (secret "libresh-redis" '
        "not found)"
    )
    assert failing_pod([pod(0, "InvalidImageName")], now) is not None  # hopeless at once
    assert failing_pod([pod(9, "ContainerCreating")]) is None
    # Moving between versions, two crashes are enough to give up (health.CRASHES_DURING_UPGRADE).
    assert failing_pod([pod(1)], now, crashes_allowed=2) is None
    assert failing_pod([pod(2)], now, crashes_allowed=2) is not None
    # Killed by its liveness probe and started again at once, it is running, not waiting: as
    # many restarts without becoming ready are as hopeless; once ready it is not failing.
    killed = pod(2, "")
    killed["status"]["containerStatuses"][0].update(
        state={"running": {"startedAt": "2026-12-02T02:59:50Z"}},
        ready=False,
        lastState={
            "terminated": {
                "reason": "Completed",
                "exitCode": 0,
                "finishedAt": "2026-12-02T02:59:49Z",
            }
        },
    )
    assert failing_pod([killed], now, crashes_allowed=3) is None
    assert failing_pod([killed], now, crashes_allowed=2) == (
        "pod web-1: container web restarted 2 times without becoming ready "
        "(last run: Completed, exit code 0)"
    )
    # Restarts that ended long ago (a pod that has run for months) say nothing of now.
    assert failing_pod([killed], now + timedelta(minutes=11), crashes_allowed=2) is None
    killed["status"]["containerStatuses"][0]["ready"] = True
    assert failing_pod([killed], now, crashes_allowed=2) is None
    # A pod being deleted (stopped for a restore, killed at its grace period) is not failing.
    stopped = {"metadata": {"name": "web-0", "deletionTimestamp": "2026-12-02T02:59:00Z"}}
    assert failing_pod([{**stopped, "status": {"phase": "Failed"}}], now) is None
    job_pod = {
        "metadata": {"name": "j", "ownerReferences": [{"kind": "Job"}]},
        "status": {"phase": "Failed"},
    }
    assert failing_pod([job_pod]) is None  # a Job's failed pod is the Job's business


def test_changed_fields_say_what_changes_and_hide_secret_values() -> None:
    from libresh_cli.kube.diff import changed_fields

    live = {
        "kind": "Deployment",
        "metadata": {"name": "a", "resourceVersion": "9"},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"image": "x:1"}]}}},
    }
    wanted = {
        "kind": "Deployment",
        "metadata": {"name": "a", "resourceVersion": "10"},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"image": "x:2"}]}}},
    }
    assert changed_fields(live, wanted) == [
        "spec.replicas: 1 -> 2",
        "spec.template.spec.containers[0].image: x:1 -> x:2",
    ]
    secret = {"kind": "Secret", "metadata": {"name": "s"}, "data": {"password": "b2xk"}}
    renewed = {**secret, "data": {"password": "bmV3"}}
    assert changed_fields(secret, renewed) == ["data.password: (changed)"]


def test_global_options_after_the_command_are_taken_as_global() -> None:
    from libresh_cli.cli.main import hoist_global_options

    assert hoist_global_options(["diff", "nc", "-v", "--kubeconfig", "k", "-o", "json"]) == [
        "-v",
        "--kubeconfig",
        "k",
        "diff",
        "nc",
        "-o",
        "json",
    ]
    assert hoist_global_options(["status", "nc", "--context=lab", "--no-color"]) == [
        "--context=lab",
        "--no-color",
        "status",
        "nc",
    ]
    # bootstrap has a --context of its own; nothing after `--` is an option
    assert hoist_global_options(["bootstrap", "ssh", "h", "--context", "a"]) == [
        "bootstrap",
        "ssh",
        "h",
        "--context",
        "a",
    ]
    assert hoist_global_options(["install", "nc", "--", "-v"]) == ["install", "nc", "--", "-v"]


def test_secrets_are_built_and_read_in_one_place() -> None:
    from libresh_cli.kube.store import secret_manifest, secret_values

    secret = secret_manifest("s", "ns", {"b": "two", "a": "één"})
    assert secret["metadata"] == {
        "name": "s",
        "namespace": "ns",
        "labels": {"app.kubernetes.io/managed-by": "libresh"},
    }
    assert list(secret["data"]) == ["a", "b"]  # sorted: the same text for the same values
    assert secret_values(secret) == {"a": "één", "b": "two"}
    assert secret_values(None) == {}


CREATED = datetime(2026, 12, 2, 3, 0, 0, tzinfo=UTC)


def _pending_pod(**status: Any) -> dict[str, Any]:
    """Pod web-1, created at CREATED, not started."""
    metadata = {"name": "web-1", "creationTimestamp": "2026-12-02T03:00:00Z"}
    return {"metadata": metadata, "status": {"phase": "Pending", **status}}


def _waiting(name: str, reason: str, message: str = "", restarts: int = 0) -> dict[str, Any]:
    waiting = {"reason": reason, **({"message": message} if message else {})}
    return {"name": name, "restartCount": restarts, "state": {"waiting": waiting}}


def test_an_image_that_cannot_be_pulled_is_given_up_on_after_a_few_minutes() -> None:
    from libresh_cli.apps.health import IMAGE_PULL_GRACE, failing_pod

    now = CREATED
    message = 'Back-off pulling image "docker.io/library/nextcloud:34.0.2-apache"'
    pulling = _pending_pod(containerStatuses=[_waiting("web", "ImagePullBackOff", message)])
    # A registry's hiccup passes: the kubelet tries again.
    assert failing_pod([pulling], now + IMAGE_PULL_GRACE - timedelta(seconds=1)) is None
    assert failing_pod([pulling], now + IMAGE_PULL_GRACE) == (
        f"pod web-1: container web is in ImagePullBackOff ({message})"
    )
    # Being pulled (a large image on a slow line) is not a failure, however long it takes.
    slow = _pending_pod(containerStatuses=[_waiting("web", "ContainerCreating")])
    assert failing_pod([slow], now + timedelta(hours=1)) is None


def test_a_pod_no_node_has_room_for_is_given_up_on_after_a_few_minutes() -> None:
    from libresh_cli.apps.health import UNSCHEDULABLE_GRACE, failing_pod, pod_trouble

    now = CREATED
    why = "0/1 nodes are available: 1 Insufficient memory."
    pending = _pending_pod(
        conditions=[
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": why}
        ],
    )
    # During a Recreate upgrade the old pod's memory is freed within its grace period.
    assert failing_pod([pending], now + UNSCHEDULABLE_GRACE - timedelta(seconds=1)) is None
    assert failing_pod([pending], now + UNSCHEDULABLE_GRACE) == (
        f"pod web-1 cannot be scheduled ({why})"
    )
    # What a time-out or a Deployment's progress deadline adds to its message, at once.
    assert pod_trouble([pending]) == f"pod web-1 cannot be scheduled ({why})"


def test_an_init_container_that_keeps_crashing_is_seen_and_described() -> None:
    from libresh_cli.apps.health import CRASHES_BEFORE_GIVING_UP, failing_pod, pod_trouble

    init = _waiting("wait-for-db", "CrashLoopBackOff", restarts=CRASHES_BEFORE_GIVING_UP)
    pod = _pending_pod(
        initContainerStatuses=[init], containerStatuses=[_waiting("web", "PodInitializing")]
    )
    expected = "pod web-1: container wait-for-db is in CrashLoopBackOff"
    assert failing_pod([pod]) == expected
    assert pod_trouble([pod]) == expected
    # Nothing wrong to tell of a pod that is starting normally.
    init["state"] = {"terminated": {"exitCode": 0}}
    init["restartCount"] = 0
    assert pod_trouble([pod]) is None
    assert pod_trouble([]) is None
