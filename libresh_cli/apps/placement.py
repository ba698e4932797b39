"""Where a one-off pod that mounts an instance's volumes must run.

A ReadWriteOnce volume is attached to one node at a time: on k3s' local-path it lives on one
node (its PersistentVolume's node affinity already says which), but an hcloud CSI volume can
be attached to any node of its location, one at a time. A hook or backup Job that lands on
another node than the pod using the volume waits in "Multi-Attach error" until its deadline
(Kubernetes docs, Persistent Volumes: access modes; hetznercloud/csi-driver: volumes attach
to one server). So such a Job is pinned to the node of the pods that use its volumes now;
when none does (the app is stopped), the scheduler is free to choose.
"""

from __future__ import annotations

import copy
from typing import Any

from libresh_cli.kube.client import KubeClient

Manifest = dict[str, Any]
ACTIVE_PHASES = ("Pending", "Running")


def claims_of(pod_spec: Manifest) -> set[str]:
    return {
        str(v["persistentVolumeClaim"]["claimName"])
        for v in pod_spec.get("volumes", []) or []
        if isinstance(v, dict) and v.get("persistentVolumeClaim", {}).get("claimName")
    }


def nodes_using(pods: list[Manifest], claims: set[str]) -> set[str]:
    """Nodes of the live pods that mount one of `claims`."""
    nodes = set()
    for pod in pods:
        spec, status = pod.get("spec", {}), pod.get("status", {})
        if pod.get("metadata", {}).get("deletionTimestamp"):
            continue
        if (
            status.get("phase") in ACTIVE_PHASES
            and spec.get("nodeName")
            and claims_of(spec) & claims
        ):
            nodes.add(str(spec["nodeName"]))
    return nodes


def pinned_to(job: Manifest, node: str) -> Manifest:
    """The Job, required to run on `node` (by the Node's name, which its hostname label need
    not match)."""
    pinned = copy.deepcopy(job)
    pod_spec = pinned["spec"]["template"]["spec"]
    pod_spec.setdefault("affinity", {})["nodeAffinity"] = {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
            ]
        }
    }
    return pinned


def place_with_volumes(kube: KubeClient, job: Manifest) -> Manifest:
    """`job` pinned to the node whose pods use its volumes, or as it is when none does."""
    claims = claims_of(job["spec"]["template"]["spec"])
    if not claims:
        return job
    pods = kube.list("v1", "Pod", job["metadata"]["namespace"])
    nodes = nodes_using(pods, claims)
    # Two nodes at once can only be ReadWriteMany volumes (or a pod on its way out): nothing
    # to pin then.
    return pinned_to(job, nodes.pop()) if len(nodes) == 1 else job
