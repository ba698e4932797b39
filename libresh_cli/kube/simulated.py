"""Is this cluster a libresh lab? A lab (libresh_cli/lab) is a real API server whose nodes kwok
simulates (and maybe one real node): no container runs on a simulated node, so what a container
would do there (a backup runner) is played by a stand-in, and what k3s would bring (Traefik,
helm-controller, cert-manager) is missing. Commands say so."""

from __future__ import annotations

from typing import Any

from libresh_cli.kube.client import KubeApiError, KubeClient

# Every lab node carries it (libresh_cli/lab/components.py node_manifest); no real node does.
LAB_NODE_LABEL = "node.libresh.dev/lab"
# kwok manages the nodes annotated so (libresh_cli/lab/components.py KWOK_NODE_ANNOTATION).
SIMULATED = ("kwok.x-k8s.io/node", "fake")


def is_lab(kube: KubeClient) -> bool:
    """Whether the cluster's nodes are a lab's. One small request (a label-selected list)."""
    return bool(_lab_nodes(kube))


def has_simulated_nodes(kube: KubeClient) -> bool:
    """Whether the cluster is a lab with nodes kwok simulates (where pods run no container)."""
    key, value = SIMULATED
    return any((n["metadata"].get("annotations") or {}).get(key) == value for n in _lab_nodes(kube))


def _lab_nodes(kube: KubeClient) -> list[dict[str, Any]]:
    try:
        return kube.list("v1", "Node", label_selector=f"{LAB_NODE_LABEL}=true")
    except KubeApiError as error:
        if error.status in (401, 403):  # a kubeconfig that may not list nodes: not a lab's
            return []
        raise
