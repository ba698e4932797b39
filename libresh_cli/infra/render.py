"""The objects a profile becomes: pure functions, no cluster."""

from __future__ import annotations

from typing import Any

import yaml

from libresh_cli.infra.profile import Component, Issuer, Profile, manifests_file

HELM_API = "helm.cattle.io/v1"
ISSUER_API = "cert-manager.io/v1"
HELM_NAMESPACE = "kube-system"  # where k3s' helm-controller looks for HelmCharts
LABELS = {"app.kubernetes.io/managed-by": "libresh", "libresh.dev/part-of": "infra"}
INGRESS_CLASS = "traefik"


def component_manifests(component: Component) -> list[dict[str, Any]]:
    if component.kind == "k3s-addon":
        return []  # k3s deploys it; libresh only checks it
    if component.kind != "manifests" or component.file is None:
        return [component_manifest(component)]
    documents = [d for d in yaml.safe_load_all(manifests_file(component.file).read_text()) if d]
    for document in documents:
        labels = document.setdefault("metadata", {}).setdefault("labels", {})
        labels.update(LABELS)
    return documents


def component_manifest(component: Component) -> dict[str, Any]:
    values = yaml.safe_dump(component.values, sort_keys=True)
    metadata = {"name": component.name, "namespace": HELM_NAMESPACE, "labels": dict(LABELS)}
    if component.kind == "helm-chart-config":
        return {
            "apiVersion": HELM_API,
            "kind": "HelmChartConfig",
            "metadata": metadata,
            "spec": {"valuesContent": values},
        }
    return {
        "apiVersion": HELM_API,
        "kind": "HelmChart",
        "metadata": metadata,
        "spec": {
            "repo": component.repo,
            "chart": component.chart,
            "version": component.version,
            "targetNamespace": component.namespace,
            "createNamespace": True,
            "valuesContent": values,
        },
    }


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


def profile_manifests(profile: Profile) -> list[dict[str, Any]]:
    return [m for c in profile.components for m in component_manifests(c)]


def issuer_manifests(profile: Profile, email: str) -> list[dict[str, Any]]:
    return [issuer_manifest(i, email) for i in profile.issuers]
