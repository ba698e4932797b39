"""Profiles: which components, at which pinned versions, with which values. Data files in
`profiles/`, validated here so a mistake names its file and field."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from libresh_cli.errors import BadInputError

KINDS = ("helm-chart", "helm-chart-config", "manifests", "k3s-addon")


@dataclass(frozen=True)
class Component:
    name: str
    kind: str
    namespace: str  # where the chart's workloads run
    workloads: tuple[str, ...]  # Deployment names
    values: dict[str, Any]
    repo: str | None = None
    chart: str | None = None
    version: str | None = None  # pinned version; None for a chart k3s ships
    file: str | None = None  # for `manifests`: the file in manifests/
    storage_class: str | None = None  # a StorageClass that must exist and be the default
    secret: str | None = None  # a Secret in kube-system it reads (e.g. the hcloud token)


@dataclass(frozen=True)
class Issuer:
    name: str
    server: str


@dataclass(frozen=True)
class Profile:
    name: str
    components: tuple[Component, ...]
    issuers: tuple[Issuer, ...]


def profiles_dir() -> Path:
    return Path(str(resources.files(__package__).joinpath("profiles")))


def manifests_file(name: str) -> Path:
    return Path(str(resources.files(__package__).joinpath("manifests"))) / name


def profile_names() -> list[str]:
    return sorted(p.stem for p in profiles_dir().glob("*.yaml"))


def load_profile(name: str) -> Profile:
    path = profiles_dir() / f"{name}.yaml"
    if not path.is_file():
        raise BadInputError(
            f"Unknown profile {name!r}.", hint=f"Profiles: {', '.join(profile_names())}."
        )
    data = yaml.safe_load(path.read_text())
    base = data.get("extends") if isinstance(data, dict) else None
    return parse_profile(data, str(path), load_profile(str(base)) if base else None)


def parse_profile(data: Any, source: str, base: Profile | None = None) -> Profile:
    """A profile; with `extends`, the base's components (minus `remove`) come first."""
    if not isinstance(data, dict):
        raise BadInputError(f"{source}: a profile is a mapping.")
    removed = set(data.get("remove") or ())
    inherited = tuple(c for c in (base.components if base else ()) if c.name not in removed)
    components = inherited + tuple(
        _component(c, f"{source}: components[{i}]")
        for i, c in enumerate(data.get("components") or [])
    )
    issuers = tuple(
        Issuer(str(_field(i, "name", f"{source}: issuers")), str(_field(i, "server", source)))
        for i in data.get("issuers") or []
    ) or (base.issuers if base else ())
    return Profile(str(_field(data, "profile", source)), components, issuers)


def _field(data: Any, key: str, where: str) -> Any:
    if not isinstance(data, dict) or data.get(key) in (None, ""):
        raise BadInputError(f"{where}: `{key}` is missing.")
    return data[key]


def _component(data: Any, where: str) -> Component:
    kind = str(_field(data, "kind", where))
    if kind not in KINDS:
        raise BadInputError(f"{where}.kind: {kind!r} is not one of {', '.join(KINDS)}.")
    required = {"helm-chart": ("repo", "chart", "version"), "manifests": ("file", "version")}
    extra = {k: str(_field(data, k, where)) for k in required.get(kind, ())}
    if kind == "manifests" and not manifests_file(extra["file"]).is_file():
        raise BadInputError(f"{where}.file: no {extra['file']} in {manifests_file('')}.")
    return Component(
        name=str(_field(data, "name", where)),
        kind=kind,
        namespace=str(_field(data, "namespace", where)),
        workloads=tuple(str(w) for w in data.get("workloads") or ()),
        values=dict(data.get("values") or {}),
        storage_class=data.get("storage_class"),
        secret=data.get("secret"),
        **extra,
    )
