"""After an install: will anything serve the app's Ingresses? An Ingress names a cert-manager
ClusterIssuer (annotation cert-manager.io/cluster-issuer, read by cert-manager's
ingress-shim: cert-manager docs, "Securing Ingress Resources") and an IngressClass (the
controller that serves it: Traefik's, `traefik`, on k3s). The API server accepts an Ingress
naming neither that exists, and its pods may be healthy, yet nobody reaches the app: say so,
with the command that installs them."""

from __future__ import annotations

from typing import Any

from libresh_cli.errors import NotFoundError
from libresh_cli.kube.client import KubeApiError, KubeClient
from libresh_cli.kube.simulated import is_lab

ISSUER_ANNOTATION = "cert-manager.io/cluster-issuer"
ISSUER = ("cert-manager.io/v1", "ClusterIssuer")
INGRESS_CLASS = ("networking.k8s.io/v1", "IngressClass")


def unserved_ingresses(kube: KubeClient, objects: list[dict[str, Any]]) -> list[str]:
    """One warning per Ingress whose ClusterIssuer or IngressClass this cluster lacks."""
    warnings = []
    for ingress in (o for o in objects if o.get("kind") == "Ingress"):
        missing = _missing_for(kube, ingress)
        if missing:
            warnings.append(_warning(ingress, missing))
    if warnings and is_lab(kube):
        warnings.append(
            "This cluster is a libresh lab: it has no k3s, so there is no Traefik and no "
            "cert-manager to install here, and nothing serves the app."
        )
    return warnings


def _missing_for(kube: KubeClient, ingress: dict[str, Any]) -> list[str]:
    annotations = ingress.get("metadata", {}).get("annotations") or {}
    issuer = annotations.get(ISSUER_ANNOTATION)
    ingress_class = (ingress.get("spec") or {}).get("ingressClassName")
    missing = []
    if issuer and not _exists(kube, ISSUER, issuer):
        missing.append(f"cert-manager's ClusterIssuer {issuer} (no certificate is issued)")
    if ingress_class and not _exists(kube, INGRESS_CLASS, ingress_class):
        missing.append(f"IngressClass {ingress_class} (no ingress controller serves it)")
    return missing


def _exists(kube: KubeClient, kind: tuple[str, str], name: str) -> bool:
    try:
        return kube.get(*kind, name) is not None
    except NotFoundError:  # the kind itself is not served: cert-manager is not installed
        return False
    except KubeApiError as error:
        if error.status in (401, 403):  # may not read it: do not cry wolf
            return True
        raise


def _warning(ingress: dict[str, Any], missing: list[str]) -> str:
    hosts = [r["host"] for r in (ingress.get("spec") or {}).get("rules") or [] if r.get("host")]
    where = f"https://{hosts[0]}" if hosts else f"Ingress {ingress['metadata']['name']}"
    return (
        f"{where} will not work yet: this cluster has no {' and no '.join(missing)}. "
        "Install the infrastructure: libresh infra install --email you@example.org"
    )
