"""Nodes: which are Ready, waiting for them, and draining one (cordon, then eviction).

One place for what `bootstrap`, `cluster create|scale` and the lab each wrote their own way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

from libresh_cli.errors import LibreshError, UnreachableError
from libresh_cli.kube.client import KubeClient, wait_for
from libresh_cli.kube.readiness import Manifest
from libresh_cli.kube.readiness import node as node_readiness

NODES_READY_TIMEOUT = 600.0


def ready_names(nodes: Iterable[Manifest]) -> set[str]:
    """The names of the nodes (as the API lists them) that are Ready."""
    return {n["metadata"]["name"] for n in nodes if node_readiness(n).ready}


def ready_node_names(kube: KubeClient, grace: float = 30.0) -> set[str]:
    """The nodes Ready now; none if the API does not answer within `grace` (a new load
    balancer takes a few health checks to send traffic)."""
    deadline = time.monotonic() + grace
    while True:
        try:
            nodes = kube.list("v1", "Node")
        except UnreachableError:
            if time.monotonic() > deadline:
                return set()
            time.sleep(2)
            continue
        return ready_names(nodes)


def wait_nodes_ready(
    kube: KubeClient,
    names: Collection[str],
    *,
    timeout: float = NODES_READY_TIMEOUT,
    unreachable_grace: float = math.inf,
    label_selector: str | None = None,
    also: Callable[[], bool] | None = None,
    interval: float = 0.2,
) -> None:
    """Wait until every node in `names` is Ready (and `also`, when given, says yes: it is
    asked first, and may raise to stop the wait). An API that does not answer is waited for
    up to `unreachable_grace` seconds from the first look, then its error is raised."""
    first_look = time.monotonic()
    wanted = set(names)

    def ready() -> bool | None:
        if also is not None and not also():
            return None
        try:
            nodes = kube.list("v1", "Node", label_selector=label_selector)
        except UnreachableError:
            # k3s may still be opening its port, a load balancer marking its targets healthy.
            if time.monotonic() - first_look > unreachable_grace:
                raise
            return None
        return True if wanted <= ready_names(nodes) else None

    what = f"node {min(wanted)}" if len(wanted) == 1 else f"{len(wanted)} nodes"
    wait_for(f"{what} to be Ready", ready, timeout=timeout, interval=interval)


def drain(kube: KubeClient, node: str, timeout: float = 600.0) -> None:
    """Cordon, then evict every pod but DaemonSet and mirror pods (disruption budgets are
    respected: an eviction they refuse is retried), then wait for them to be gone."""
    kube.request(
        "PATCH",
        f"/api/v1/nodes/{node}",
        body={"spec": {"unschedulable": True}},
        content_type="application/merge-patch+json",
    )

    def remaining() -> list[dict[str, Any]]:
        pods = kube.request(
            "GET", "/api/v1/pods", params={"fieldSelector": f"spec.nodeName={node}"}
        )["items"]
        return [p for p in pods if _evictable(p)]

    def evicted() -> bool | None:
        pods = remaining()
        for pod in pods:
            _evict(kube, pod)
        return True if not pods else None

    wait_for(f"the pods of {node} to move", evicted, timeout=timeout)


def _evictable(pod: dict[str, Any]) -> bool:
    meta = pod["metadata"]
    owners = meta.get("ownerReferences", [])
    if any(o.get("kind") == "DaemonSet" for o in owners):
        return False
    return "kubernetes.io/config.mirror" not in meta.get("annotations", {})


def _evict(kube: KubeClient, pod: dict[str, Any]) -> None:
    meta = pod["metadata"]
    body = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
    }
    try:
        kube.request(
            "POST",
            f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/eviction",
            body=body,
        )
    except LibreshError as error:
        # 429: a disruption budget says not now; 404: already gone. Both: look again later.
        if getattr(error, "status", None) not in (404, 429):
            raise
