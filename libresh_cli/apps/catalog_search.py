"""What `libresh catalog list` and `catalog search` show of each app: its category, its
one-line description, the memory its instance requests, and whether it signs people in with
the cluster's identity provider (SSO)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from libresh_cli import yamlfile
from libresh_cli.apps.catalog import sample_value
from libresh_cli.apps.instance import Instance
from libresh_cli.apps.model import App
from libresh_cli.apps.render import RenderError, generated_secret_keys, render

# Binary and decimal suffixes of Kubernetes quantities (resource.Quantity), in bytes.
_UNITS = {
    "": 1,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "k": 1000,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
}
_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|K|M|G|T)?")
_RUNNING_KINDS = ("Deployment", "StatefulSet")


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    category: str
    version: str
    description: str
    requires: tuple[str, ...]
    memory_bytes: int | None  # None: the app's templates could not be rendered
    sso: bool
    directory: str

    @property
    def memory(self) -> str:
        return "?" if self.memory_bytes is None else f"{round(self.memory_bytes / 1024**2)}Mi"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "category": self.category,
            "version": self.version,
            "description": self.description,
            "requires": list(self.requires),
            "memory_request": self.memory,
            "memory_request_bytes": self.memory_bytes,
            "sso": self.sso,
            "directory": self.directory,
        }

    def matches(self, word: str) -> bool:
        """`catalog search WORD`: in the name, description or category, ignoring case."""
        wanted = word.casefold()
        return any(
            wanted in text.casefold() for text in (self.name, self.description, self.category)
        )


def quantity_bytes(value: Any) -> int:
    """`512Mi` -> 536870912; a plain number is bytes. Anything else counts as 0."""
    found = _QUANTITY.fullmatch(str(value).strip())
    if not found:
        return 0
    return int(float(found.group(1)) * _UNITS[found.group(2) or ""])


def memory_requested(objects: list[dict[str, Any]]) -> int:
    """What the scheduler reserves while the instance runs: the memory requests of the
    containers of its Deployments and StatefulSets (with its embedded services), times their
    replicas. Init containers, hook Jobs and CronJobs run now and then and are left out."""
    total = 0
    for manifest in objects:
        if manifest.get("kind") not in _RUNNING_KINDS:
            continue
        spec = manifest.get("spec") or {}
        replicas = int(spec.get("replicas", 1) or 0)
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
        for container in containers:
            requests = (container.get("resources") or {}).get("requests") or {}
            total += replicas * quantity_bytes(requests.get("memory", 0))
    return total


def supports_sso(app: App) -> bool:
    """Whether app.yaml says `requires: {oidc: ...}`: the app signs people in with the
    cluster's identity provider. Read from the file, whatever the model makes of it."""
    try:
        data = yamlfile.load(
            yamlfile.read_text(app.directory / "app.yaml", what="app definition"),
            source=str(app.directory / "app.yaml"),
        )
    except yamlfile.YamlRefusedError:
        return False
    requires = data.get("requires") if isinstance(data, dict) else None
    return isinstance(requires, dict) and "oidc" in requires


def entry_of(app: App) -> CatalogEntry:
    return CatalogEntry(
        name=app.name,
        category=app.category,
        version=app.latest.version,
        description=app.description,
        requires=(*app.requires, *(("mail",) if app.requires_mail else ())),
        memory_bytes=_rendered_memory(app),
        sso=supports_sso(app),
        directory=str(app.directory),
    )


def _rendered_memory(app: App) -> int | None:
    """The newest version rendered with sample values, as `catalog validate` does, with the
    services' embedded providers (the default)."""
    params = {p.name: sample_value(p) for p in app.parameters if not p.secret}
    secrets = {key: "x" * length for key, length in generated_secret_keys(app).items()}
    secrets.update({p.name: "x" * 16 for p in app.parameters if p.secret and not p.generate})
    try:
        objects = render(Instance(app.name, app, app.latest, params, secrets))
    except RenderError:
        return None
    return memory_requested(objects)


def search(entries: list[CatalogEntry], word: str) -> list[CatalogEntry]:
    return [entry for entry in entries if entry.matches(word)]
