"""Values kept in the cluster: Secrets (built and read in one place, their values base64 as
the API wants them) and libresh's settings, each a ConfigMap holding one JSON document beside
an optional Secret for what must not be readable by all (passwords, keys), in the namespace
libresh-system.

Three services keep settings this way (backing services, backup storage, infrastructure);
they name their ConfigMap, Secret and JSON key, and the store does the rest."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pure helpers stay importable without the HTTP client (templates use them)
    from libresh_cli.kube.client import KubeClient

Manifest = dict[str, Any]
SYSTEM_NAMESPACE = "libresh-system"
MANAGED_LABELS = {"app.kubernetes.io/managed-by": "libresh"}


def secret_manifest(
    name: str,
    namespace: str | None,
    values: Mapping[str, str],
    labels: Mapping[str, str] | None = None,
) -> Manifest:
    """An Opaque Secret of text values (encoded here; sorted, so a manifest is the same text
    for the same values). A None namespace leaves it to the caller's apply."""
    metadata: Manifest = {
        "name": name,
        "labels": dict(MANAGED_LABELS if labels is None else labels),
    }
    if namespace is not None:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(values.items())},
    }


def secret_values(secret: Mapping[str, Any] | None) -> dict[str, str]:
    """A Secret's values as text; {} for no Secret or no data."""
    data = (secret or {}).get("data") or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def read_secret(kube: KubeClient, name: str, namespace: str) -> dict[str, str]:
    return secret_values(kube.get("v1", "Secret", name, namespace))


@dataclass(frozen=True)
class SettingsStore:
    """One kind of settings: the ConfigMap `configmap` holds a JSON document under `key`
    (with no key, the ConfigMap's own entries are the settings, text values); the Secret
    `secret` (if any) holds the secret values beside it."""

    configmap: str
    key: str | None
    secret: str | None = None
    namespace: str = SYSTEM_NAMESPACE

    def read(self, kube: KubeClient) -> tuple[Any, dict[str, str]]:
        """(the document, or None when never saved; the secret values, or {})."""
        found = kube.get("v1", "ConfigMap", self.configmap, self.namespace)
        secrets = read_secret(kube, self.secret, self.namespace) if self.secret else {}
        if found is None:
            return None, secrets
        data = found.get("data") or {}
        if self.key is None:
            return dict(data), secrets
        text = data.get(self.key)
        return (json.loads(text) if text is not None else None), secrets

    def write(
        self, kube: KubeClient, document: Any, secrets: Mapping[str, str] | None = None
    ) -> None:
        """Save the document and, when given, the secret values (replacing the Secret's)."""
        self._ensure_namespace(kube)
        if secrets is not None:
            self.write_secrets(kube, secrets)
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": self.configmap,
                    "namespace": self.namespace,
                    "labels": MANAGED_LABELS,
                },
                "data": (
                    dict(document)
                    if self.key is None
                    else {self.key: json.dumps(document, sort_keys=True)}
                ),
            }
        )

    def write_secrets(self, kube: KubeClient, secrets: Mapping[str, str]) -> None:
        """Save the secret values alone (e.g. a backup key made before its storage is set)."""
        if self.secret is None:
            raise ValueError(f"the settings {self.configmap} keep no secret values")
        self._ensure_namespace(kube)
        kube.apply(secret_manifest(self.secret, self.namespace, secrets))

    def _ensure_namespace(self, kube: KubeClient) -> None:
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": self.namespace, "labels": MANAGED_LABELS},
            }
        )
