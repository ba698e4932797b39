"""Profiles: which components, at which pinned versions, with which values. Data files in
`profiles/`, validated here so a mistake names its file and field."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from libresh_cli import yamlfile
from libresh_cli.errors import BadInputError

KINDS = ("helm-chart", "helm-chart-config", "manifests", "k3s-addon")
# What a variant's `when` may test: the cluster's settings and the packaged chart's version.
CONDITIONS = ("private_network", "chart_min", "chart_below")
CHART_VERSION = re.compile(r"\d+\.\d+\.\d+")
K3S_RELEASE = re.compile(r"v\d+\.\d+\.\d+\+k3s\d+")


@dataclass(frozen=True)
class Variant:
    """Values merged into a component's own when every condition of `when` holds (an empty
    `when` always holds): how one profile serves clusters with and without a private network,
    or two versions of a chart k3s packages."""

    when: dict[str, Any]
    values: dict[str, Any]


@dataclass(frozen=True)
class PackagedChart:
    """For a chart k3s itself packages (Traefik): which chart each k3s release carries, the
    oldest chart libresh's values are written for, and the k3s release libresh installs by
    default (its chart is assumed when the cluster does not say which one it runs)."""

    supported_from: str
    releases: dict[str, str]  # k3s release -> upstream chart version
    default_k3s: str

    @property
    def default_chart(self) -> str:
        return self.releases[self.default_k3s]


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
    bootstrap: bool = False  # helm-chart: install it before nodes are initialised
    variants: tuple[Variant, ...] = ()
    packaged: PackagedChart | None = None  # helm-chart-config: the chart k3s packages
    # A LoadBalancer Service (in `namespace`) that must have an address to be healthy.
    load_balancer: str | None = None


@dataclass(frozen=True)
class Issuer:
    name: str
    server: str


@dataclass(frozen=True)
class Profile:
    name: str
    components: tuple[Component, ...]
    issuers: tuple[Issuer, ...]
    # Settings the cluster must give for this profile's values (e.g. the hcloud location).
    needs: tuple[str, ...] = field(default=())


def profiles_dir() -> Path:
    return Path(str(resources.files(__package__).joinpath("profiles")))


def manifests_file(name: str) -> Path:
    return Path(str(resources.files(__package__).joinpath("manifests"))) / name


def profile_names() -> list[str]:
    return sorted(p.stem for p in profiles_dir().glob("*.yaml"))


def load_profile(name: str) -> Profile:
    path = profiles_dir() / f"{name}.yaml"
    if name not in profile_names() or not path.is_file():  # never a path (--profile ../x)
        raise BadInputError(
            f"Unknown profile {name!r}.", hint=f"Profiles: {', '.join(profile_names())}."
        )
    data = yamlfile.load_file(path, what="infrastructure profile")
    base = data.get("extends") if isinstance(data, dict) else None
    return parse_profile(data, str(path), load_profile(str(base)) if base else None)


def parse_profile(data: Any, source: str, base: Profile | None = None) -> Profile:
    """A profile; with `extends`, the base's components (minus `remove`, with `amend`'s
    variants added) come first."""
    if not isinstance(data, dict):
        raise BadInputError(f"{source}: a profile is a mapping.")
    removed = set(data.get("remove") or ())
    inherited = [c for c in (base.components if base else ()) if c.name not in removed]
    for i, amend in enumerate(data.get("amend") or []):
        where = f"{source}: amend[{i}]"
        name = str(_field(amend, "name", where))
        index = next((n for n, c in enumerate(inherited) if c.name == name), None)
        if index is None:
            raise BadInputError(f"{where}.name: no inherited component {name!r}.")
        more = _variants(amend.get("variants"), where)
        inherited[index] = replace(inherited[index], variants=inherited[index].variants + more)
    components = tuple(inherited) + tuple(
        _component(c, f"{source}: components[{i}]")
        for i, c in enumerate(data.get("components") or [])
    )
    issuers = tuple(
        Issuer(str(_field(i, "name", f"{source}: issuers")), str(_field(i, "server", source)))
        for i in data.get("issuers") or []
    ) or (base.issuers if base else ())
    needs = tuple(str(n) for n in data.get("needs") or ()) or (base.needs if base else ())
    return Profile(str(_field(data, "profile", source)), components, issuers, needs)


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
    if data.get("bootstrap") and kind != "helm-chart":
        raise BadInputError(f"{where}.bootstrap: only a helm-chart can be a bootstrap chart.")
    packaged = data.get("packaged")
    return Component(
        name=str(_field(data, "name", where)),
        kind=kind,
        namespace=str(_field(data, "namespace", where)),
        workloads=tuple(str(w) for w in data.get("workloads") or ()),
        values=dict(data.get("values") or {}),
        storage_class=data.get("storage_class"),
        secret=data.get("secret"),
        bootstrap=bool(data.get("bootstrap", False)),
        variants=_variants(data.get("variants"), where),
        packaged=_packaged(packaged, f"{where}.packaged") if packaged is not None else None,
        load_balancer=data.get("load_balancer"),
        **extra,
    )


def _variants(data: Any, where: str) -> tuple[Variant, ...]:
    variants = []
    for i, item in enumerate(data or []):
        here = f"{where}.variants[{i}]"
        when = dict((item or {}).get("when") or {})
        unknown = sorted(set(when) - set(CONDITIONS))
        if unknown:
            raise BadInputError(
                f"{here}.when: {', '.join(unknown)} not one of {', '.join(CONDITIONS)}."
            )
        for key in ("chart_min", "chart_below"):
            if key in when and not CHART_VERSION.fullmatch(str(when[key])):
                raise BadInputError(f"{here}.when.{key}: {when[key]!r} is not X.Y.Z.")
        variants.append(Variant(when, dict(_field(item, "values", here))))
    return tuple(variants)


def _packaged(data: Any, where: str) -> PackagedChart:
    releases = {str(k): str(v) for k, v in dict(_field(data, "releases", where)).items()}
    for release, chart in releases.items():
        if not K3S_RELEASE.fullmatch(release) or not CHART_VERSION.fullmatch(chart):
            raise BadInputError(f"{where}.releases: {release}: {chart} is not k3s -> X.Y.Z.")
    default_k3s = str(_field(data, "default_k3s", where))
    if default_k3s not in releases:
        raise BadInputError(f"{where}.default_k3s: {default_k3s} is not in `releases`.")
    return PackagedChart(str(_field(data, "supported_from", where)), releases, default_k3s)
