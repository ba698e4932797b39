"""The objects a profile becomes: pure functions, no cluster."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from libresh_cli import yamlfile
from libresh_cli.errors import BadInputError
from libresh_cli.infra.profile import Component, Issuer, Profile, Variant, manifests_file

HELM_API = "helm.cattle.io/v1"
ISSUER_API = "cert-manager.io/v1"
HELM_NAMESPACE = "kube-system"  # where k3s' helm-controller looks for HelmCharts
LABELS = {"app.kubernetes.io/managed-by": "libresh", "libresh.dev/part-of": "infra"}
INGRESS_CLASS = "traefik"
PLACEHOLDER = re.compile(r"\$\{([a-z_]+)\}")


@dataclass(frozen=True)
class Cluster:
    """What a profile's values depend on in one cluster: its settings (kept in the ConfigMap
    libresh-infra) and the version of each chart k3s packages, as k3s' HelmChart names it."""

    location: str | None = None  # Hetzner location for the load balancers the CCM makes
    private_network: bool = False  # the hcloud private network (its name is in the Secret)
    charts: dict[str, str] = field(default_factory=dict)  # component -> packaged chart version


def chart_version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def packaged_chart(component: Component, cluster: Cluster) -> str | None:
    """The chart version k3s packages for this component: the cluster's, else the one of the
    k3s release libresh installs by default."""
    if component.packaged is None:
        return None
    return cluster.charts.get(component.name) or component.packaged.default_chart


def _holds(variant: Variant, component: Component, cluster: Cluster) -> bool:
    when = variant.when
    if "private_network" in when and bool(when["private_network"]) != cluster.private_network:
        return False
    if "chart_min" in when or "chart_below" in when:
        chart = packaged_chart(component, cluster)
        if chart is None:
            raise BadInputError(f"{component.name}: a chart condition needs `packaged`.")
        if "chart_min" in when and chart_version(chart) < chart_version(when["chart_min"]):
            return False
        if "chart_below" in when and chart_version(chart) >= chart_version(when["chart_below"]):
            return False
    return True


def _merge(into: dict[str, Any], more: dict[str, Any]) -> None:
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def _fill(tree: Any, cluster: Cluster, where: str) -> Any:
    """`${location}` in a value string becomes the cluster's setting."""
    if isinstance(tree, dict):
        return {k: _fill(v, cluster, where) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_fill(v, cluster, where) for v in tree]
    if not isinstance(tree, str):
        return tree

    def setting(match: re.Match[str]) -> str:
        value = getattr(cluster, match.group(1), None)
        if not isinstance(value, str) or not value:
            raise BadInputError(f"{where}: the cluster's {match.group(1)} is not known.")
        return value

    return PLACEHOLDER.sub(setting, tree)


def component_values(component: Component, cluster: Cluster) -> dict[str, Any]:
    """The component's values with every variant that holds for this cluster merged in."""
    values = copy.deepcopy(component.values)
    for variant in component.variants:
        if _holds(variant, component, cluster):
            _merge(values, variant.values)
    filled: dict[str, Any] = _fill(values, cluster, component.name)
    return filled


def component_manifests(component: Component, cluster: Cluster) -> list[dict[str, Any]]:
    if component.kind == "k3s-addon":
        return []  # k3s deploys it; libresh only checks it
    if component.kind != "manifests" or component.file is None:
        return [component_manifest(component, cluster)]
    path = manifests_file(component.file)
    text = yamlfile.read_text(path, what="manifest")
    documents = [d for d in yamlfile.load_all(text, source=str(path)) if d]
    for document in documents:
        labels = document.setdefault("metadata", {}).setdefault("labels", {})
        labels.update(LABELS)
    return documents


def component_manifest(component: Component, cluster: Cluster) -> dict[str, Any]:
    values = yaml.safe_dump(component_values(component, cluster), sort_keys=True)
    metadata = {"name": component.name, "namespace": HELM_NAMESPACE, "labels": dict(LABELS)}
    if component.kind == "helm-chart-config":
        return {
            "apiVersion": HELM_API,
            "kind": "HelmChartConfig",
            "metadata": metadata,
            "spec": {"valuesContent": values},
        }
    spec: dict[str, Any] = {
        "repo": component.repo,
        "chart": component.chart,
        "version": component.version,
        "targetNamespace": component.namespace,
        "createNamespace": True,
        "valuesContent": values,
    }
    if component.bootstrap:
        # helm-controller gives a bootstrap chart's install Job hostNetwork, a control-plane
        # nodeSelector and tolerations for the taints of nodes not initialised yet (among
        # them node.cloudprovider.kubernetes.io/uninitialized, which every node carries until
        # the cloud-controller-manager has run). Without it, the CCM's own install Job can
        # never be scheduled. (k3s-io/helm-controller pkg/controllers/chart/chart.go, `if
        # chart.Spec.Bootstrap`.)
        spec["bootstrap"] = True
    return {"apiVersion": HELM_API, "kind": "HelmChart", "metadata": metadata, "spec": spec}


def issuer_manifest(issuer: Issuer, email: str) -> dict[str, Any]:
    return {
        "apiVersion": ISSUER_API,
        "kind": "ClusterIssuer",
        "metadata": {"name": issuer.name, "labels": dict(LABELS)},
        "spec": {
            "acme": {
                "server": issuer.server,
                "email": email,
                # The account key cert-manager makes; a Secret in its namespace.
                "privateKeySecretRef": {"name": f"{issuer.name}-account"},
                "solvers": [{"http01": {"ingress": {"ingressClassName": INGRESS_CLASS}}}],
            }
        },
    }


def profile_manifests(profile: Profile, cluster: Cluster) -> list[dict[str, Any]]:
    return [m for c in profile.components for m in component_manifests(c, cluster)]


def issuer_manifests(profile: Profile, email: str) -> list[dict[str, Any]]:
    return [issuer_manifest(i, email) for i in profile.issuers]
