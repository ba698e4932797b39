"""The memory a profile asks for: every `resources.requests.memory` its objects and chart
values set, summed per component (pure; `infra status` measures the running workloads)."""

from __future__ import annotations

from typing import Any

from libresh_cli.infra.profile import Component, Profile
from libresh_cli.infra.render import Cluster, component_manifests
from libresh_cli.kube.quantity import quantity

SINGLE_TARGET_MIB = 512


def _requests_in(tree: Any) -> int:
    """Sum of memory requests anywhere in a values tree or manifest (one per container)."""
    if isinstance(tree, list):
        return sum(_requests_in(item) for item in tree)
    if not isinstance(tree, dict):
        return 0
    total = 0
    for key, value in tree.items():
        if key == "resources" and isinstance(value, dict):
            total += int(quantity((value.get("requests") or {}).get("memory", 0)))
        else:
            total += _requests_in(value)
    return total


def component_requests(component: Component) -> int:
    if component.kind == "manifests":
        return sum(_requests_in(m.get("spec")) for m in component_manifests(component, Cluster()))
    # Requests are set in a component's own values, never in a variant: they do not depend
    # on the cluster.
    return _requests_in(component.values)


def declared_requests(profile: Profile) -> dict[str, int]:
    return {c.name: component_requests(c) for c in profile.components}
