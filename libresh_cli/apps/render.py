"""From an app, a version and an instance's values to the Kubernetes objects to apply.

Pure: no cluster access. Templates run in Jinja2's sandbox with StrictUndefined (a catalog may
come from a third party, and a missing value must fail rather than render as ""). Every
object gets libresh's labels and the instance's namespace; apps may only create namespaced
kinds from an allow-list, so installing an app never needs cluster-wide rights.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from libresh_cli import yamlfile
from libresh_cli.apps.model import App, Version
from libresh_cli.errors import BadInputError

MANAGED_BY = "app.kubernetes.io/managed-by"
INSTANCE = "app.kubernetes.io/instance"
APP_NAME = "app.kubernetes.io/name"
APP_VERSION = "app.kubernetes.io/version"
CREDENTIALS_SECRET = "libresh-credentials"  # noqa: S105 - the Secret's name
CLUSTER_ISSUER = "letsencrypt-production"
ALLOWED_KINDS = {
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "PersistentVolumeClaim"),
    ("v1", "ServiceAccount"),
    ("networking.k8s.io/v1", "Ingress"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("policy/v1", "PodDisruptionBudget"),
}
Manifest = dict[str, Any]


@dataclass(frozen=True)
class Instance:
    """One installed copy of an app: its name is also its namespace."""

    name: str
    app: App
    version: Version
    params: Mapping[str, Any]  # every parameter's value, secrets excluded
    secret_values: Mapping[str, str] = field(default_factory=dict, repr=False)
    # kind -> provider and its settings (host, port…); absent means `embedded`
    services: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # passwords of external services (admin of the shared PostgreSQL, the shared Redis)
    service_secrets: Mapping[str, str] = field(default_factory=dict, repr=False)

    def provider(self, kind: str) -> str:
        return str(self.services.get(kind, {}).get("provider", "embedded"))

    @property
    def namespace(self) -> str:
        return self.name

    @property
    def domain(self) -> str | None:
        value = self.params.get("domain")
        return str(value) if value else None

    @property
    def url(self) -> str | None:
        return f"https://{self.domain}" if self.domain else None

    def labels(self) -> dict[str, str]:
        return {
            MANAGED_BY: "libresh",
            INSTANCE: self.name,
            APP_NAME: self.app.name,
            APP_VERSION: self.version.version,
        }


class RenderError(BadInputError):
    pass


def render(instance: Instance) -> list[Manifest]:
    """Every object of the instance: namespace and guards first, then the app's templates."""
    objects = [namespace_manifest(instance), network_policy_manifest(instance)]
    objects.append(credentials_secret(instance))
    for kind in instance.app.requires:
        objects.append(connection_secret(kind, instance))
        objects += service_objects(kind, instance)
    for template in instance.app.templates:
        objects += _render_file(template, instance)
    return [_finish(o, instance) for o in objects]


SERVICES_DIR = Path(str(resources.files(__package__).joinpath("services")))
PROVISION_SCRIPT = SERVICES_DIR / "postgres-provision.sh"
EMBEDDED_INIT_SCRIPT = SERVICES_DIR / "postgres-embedded-init.sh"


def service_objects(kind: str, instance: Instance) -> list[Manifest]:
    """What meets a requirement inside the namespace: a whole server (embedded), a
    provisioning Job with its admin credentials (external postgres), or nothing (external
    redis, shared as it is)."""
    provider = instance.provider(kind)
    if provider == "embedded" and kind == "postgres":
        init = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "libresh-postgres-init"},
            "data": {"10-libresh-app-role.sh": EMBEDDED_INIT_SCRIPT.read_text()},
        }
        return [init, *_render_file(SERVICES_DIR / "postgres-embedded.yaml", instance)]
    if provider == "embedded":
        return _render_file(SERVICES_DIR / f"{kind}-embedded.yaml", instance)
    if kind == "postgres":
        admin = {"password": instance.service_secrets["postgres_admin_password"]}
        script = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "libresh-postgres-provision"},
            "data": {"provision.sh": PROVISION_SCRIPT.read_text()},
        }
        return [
            _secret("libresh-postgres-admin", admin),
            script,
            *_render_file(SERVICES_DIR / "postgres-external.yaml", instance),
        ]
    return []


def template_context(instance: Instance) -> dict[str, Any]:
    return {
        "instance": {
            "name": instance.name,
            "namespace": instance.namespace,
            "domain": instance.domain,
            "url": instance.url,
        },
        "app": {"name": instance.app.name, "version": instance.version.version},
        "image": instance.version.image,
        "params": dict(instance.params),
        "secrets": {"name": CREDENTIALS_SECRET},
        "services": {kind: dict(instance.services.get(kind, {})) for kind in instance.app.requires},
        "labels": instance.labels(),
        "cluster_issuer": CLUSTER_ISSUER,
    }


APACHE_MAX_BODY = 2147483647  # LimitRequestBody's largest value (Apache 2.4 core docs)
SIZE_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def size_in_bytes(size: str) -> int:
    """'10G', '512M', '50Gi' -> bytes (binary units, as PHP's and Kubernetes' are)."""
    text = str(size).strip().removesuffix("i")
    if not text[:-1].isdigit() or text[-1:] not in SIZE_UNITS:
        raise RenderError(f"{size!r} is not a size such as 512M or 10G.")
    return int(text[:-1]) * SIZE_UNITS[text[-1]]


def apache_body_limit(size: str) -> str:
    """Apache's LimitRequestBody for an upload limit: the bytes, or 0 (no limit) above what
    the directive accepts."""
    wanted = size_in_bytes(size)
    return str(wanted) if wanted <= APACHE_MAX_BODY else "0"


def _environment() -> SandboxedEnvironment:
    environment = SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
    environment.filters["apache_body_limit"] = apache_body_limit
    return environment


def _render_file(template: Path, instance: Instance) -> list[Manifest]:
    try:
        source = yamlfile.read_text(template, what="template")
    except BadInputError as error:
        raise RenderError(error.message, hint=error.hint) from None
    try:
        text = _environment().from_string(source).render(template_context(instance))
    except TemplateError as error:
        line = getattr(error, "lineno", None)
        where = f"{template}:{line}" if line else str(template)
        raise RenderError(
            f"{where}: the template failed: {error}",
            hint="Fix the template; `libresh catalog validate` renders every "
            "version to find such errors.",
        ) from error
    try:
        loaded = yamlfile.load_all(
            text, source=f"{template} (rendered)", limit=yamlfile.MAX_RENDERED_BYTES
        )
    except yamlfile.YamlRefusedError as error:
        raise RenderError(error.message, hint=error.hint) from None
    documents = [d for d in loaded if d is not None]
    for document in documents:
        _check_object(document, template)
    return documents


def _check_object(document: Any, template: Path) -> None:
    if not isinstance(document, dict) or not document.get("metadata", {}).get("name"):
        raise RenderError(f"{template}: every document must be an object with metadata.name.")
    kind = (document.get("apiVersion"), document.get("kind"))
    if kind not in ALLOWED_KINDS:
        allowed = ", ".join(sorted(k for _, k in ALLOWED_KINDS))
        raise RenderError(
            f"{template}: {kind[1]} ({kind[0]}) is not allowed in an app.",
            hint=f"Apps may create: {allowed}.",
        )


def _finish(manifest: Manifest, instance: Instance) -> Manifest:
    """Add libresh's labels everywhere (objects and pod templates) and the namespace."""
    result = copy.deepcopy(manifest)
    metadata = result.setdefault("metadata", {})
    metadata.setdefault("labels", {}).update(instance.labels())
    if result["kind"] != "Namespace":
        metadata["namespace"] = instance.namespace
    for template in _pod_templates(result):
        template.setdefault("metadata", {}).setdefault("labels", {}).update(instance.labels())
        # No API token in app pods unless a template asks for one: least privilege.
        template.setdefault("spec", {}).setdefault("automountServiceAccountToken", False)
    return result


def _pod_templates(manifest: Manifest) -> list[dict[str, Any]]:
    spec = manifest.get("spec", {})
    if manifest["kind"] in ("Deployment", "StatefulSet", "Job"):
        return [spec.setdefault("template", {})]
    if manifest["kind"] == "CronJob":
        return [
            spec.setdefault("jobTemplate", {}).setdefault("spec", {}).setdefault("template", {})
        ]
    return []


def namespace_manifest(instance: Instance) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": instance.namespace,
            "labels": {
                # baseline: what the official images of common apps need (they start as root
                # and drop privileges); warn on anything short of restricted.
                "pod-security.kubernetes.io/enforce": "baseline",
                "pod-security.kubernetes.io/warn": "restricted",
            },
        },
    }


def network_policy_manifest(instance: Instance) -> Manifest:
    """Pods of this instance accept traffic from their own namespace and from the ingress
    controller (k3s runs Traefik in kube-system), never from other apps' namespaces."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "libresh-isolate"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {"podSelector": {}},
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                            }
                        },
                    ]
                }
            ],
        },
    }


def generated_secret_keys(app: App) -> dict[str, int]:
    """Keys of the credentials Secret that libresh generates, with their lengths: the
    parameters marked `secret: generate` and one password per backing service."""
    keys = {p.name: p.length for p in app.parameters if p.generate}
    keys.update({f"{kind}_password": 32 for kind in app.requires})
    if "postgres" in app.requires:  # the embedded server's own superuser
        keys["postgres_superuser_password"] = 32
    return keys


def _secret(name: str, values: Mapping[str, str]) -> Manifest:
    # `data`, not `stringData`: the API stores data, so what we apply is what is read back,
    # and a re-run compares equal.
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in sorted(values.items())}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "data": encoded,
    }


def credentials_secret(instance: Instance) -> Manifest:
    return _secret(CREDENTIALS_SECRET, instance.secret_values)


def connection_secret(kind: str, instance: Instance) -> Manifest:
    """The fixed, documented shape an app reads a backing service from (README, "Backing
    services"): postgres -> host, port, database, username, password, uri;
    redis -> host, port, password, uri."""
    external = instance.provider(kind) == "external"
    settings = instance.services.get(kind, {})
    host = str(settings["host"]) if external else kind
    port = str(settings.get("port") or (5432 if kind == "postgres" else 6379))
    if kind == "postgres":
        password = instance.secret_values["postgres_password"]
        # On a shared server every instance has its own role and database.
        name = (
            f"libresh_{instance.name.replace('-', '_')}"
            if external
            else instance.app.name.replace("-", "_")
        )
        sslmode = str(settings.get("sslmode", "require")) if external else "disable"
        values = {
            "host": host,
            "port": port,
            "database": name,
            "username": name,
            "password": password,
            "uri": f"postgresql://{name}:{quote(password)}@{host}:{port}/{name}?sslmode={sslmode}",
        }
    else:
        password = (
            instance.service_secrets["redis_password"]
            if external
            else instance.secret_values["redis_password"]
        )
        values = {
            "host": host,
            "port": port,
            "password": password,
            "uri": f"redis://:{quote(password)}@{host}:{port}/0",
        }
    return _secret(f"libresh-{kind}", values)
