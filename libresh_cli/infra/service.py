"""`libresh infra install | status`: apply a profile's objects, check what k3s made of them.

The objects are HelmChart / HelmChartConfig in kube-system (k3s' helm-controller installs the
charts in the cluster) and, once cert-manager's CRDs exist, the ClusterIssuers. Settings
asked once (the profile, the Let's Encrypt contact email, for `ha` the Hetzner location and
private network) live in the ConfigMap `libresh-infra` of libresh-system. Values for a chart
k3s packages (Traefik) follow the chart version k3s' own HelmChart names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from libresh_cli import yamlfile
from libresh_cli.errors import BadInputError, OperationFailedError, PrerequisiteError
from libresh_cli.infra.profile import Component, Profile, load_profile
from libresh_cli.infra.render import (
    HELM_API,
    HELM_NAMESPACE,
    LABELS,
    Cluster,
    chart_version,
    component_values,
    issuer_manifests,
    packaged_chart,
    profile_manifests,
)
from libresh_cli.kube.client import KubeClient, WaitTimeoutError, wait_for
from libresh_cli.kube.diff import normalize
from libresh_cli.kube.quantity import quantity
from libresh_cli.kube.readiness import custom_resource_definition, deployment, job
from libresh_cli.kube.simulated import is_lab
from libresh_cli.kube.store import SettingsStore, read_secret, secret_manifest
from libresh_cli.progress import Reporter

SETTINGS_CONFIGMAP = "libresh-infra"
SETTINGS = SettingsStore(SETTINGS_CONFIGMAP, None)  # its entries are the settings
HELM_CRDS = ("helmcharts.helm.cattle.io", "helmchartconfigs.helm.cattle.io")
ISSUER_CRD = "clusterissuers.cert-manager.io"
CRD_API = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
# helm-controller installs cert-manager in a Job; the first time it pulls images: minutes.
CHARTS_TIMEOUT = 600.0
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
LOCATION = re.compile(r"[a-z]+[0-9]*")  # Hetzner location names: fsn1, nbg1, hel1, ash, ...
# k3s' HelmChart names the tarball it serves: traefik-38.0.201+up38.0.2.tgz packages upstream
# 38.0.2 (k3s-io/k3s manifests/traefik.yaml; the `+up` part is the upstream chart's version).
PACKAGED_CHART = re.compile(r"-(\d+\.\d+\.\d+)(?:\+up(\d+\.\d+\.\d+))?\.tgz$")
MIB = 1024**2


@dataclass(frozen=True)
class Change:
    kind: str
    name: str
    action: str  # create | update | unchanged | create later (after cert-manager is up)


@dataclass
class InstallResult:
    profile: str
    email: str
    cluster: Cluster = field(default_factory=Cluster)
    settings: dict[str, str] = field(default_factory=dict)  # kept in libresh-infra
    changes: list[Change] = field(default_factory=list)
    # Secrets to apply (the hcloud token): never in to_dict, never printed.
    secrets: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def nothing_to_do(self) -> bool:
        return all(c.action == "unchanged" for c in self.changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "email": self.email,
            "settings": self.settings,
            "packaged_charts": self.cluster.charts,
            "nothing_to_do": self.nothing_to_do,
            "changes": [c.__dict__ for c in self.changes],
        }


def require_k3s(kube: KubeClient, profile_name: str | None = None) -> None:
    missing = [name for name in HELM_CRDS if kube.get(*CRD_API, name) is None]
    if missing and is_lab(kube):
        raise PrerequisiteError(
            f"This cluster is a libresh lab: a real API server whose nodes are simulated, with "
            f"no k3s (no {' or '.join(missing)}: it is not k3s), so libresh's infrastructure "
            "can be neither installed nor previewed here. On a k3s cluster, `libresh infra "
            f"install` installs {_what_is_installed(load_profile(profile_name or 'single'))}.",
            hint="On the lab, apps install without it: no certificate is issued and nothing "
            "serves their Ingresses. To try the infrastructure, use a k3s server "
            "(`libresh bootstrap ssh HOST` makes one).",
        )
    if missing:
        raise PrerequisiteError(
            f"This cluster has no {' or '.join(missing)}: it is not k3s, whose helm-controller "
            "registers them, so libresh's infrastructure cannot be installed the k3s way.",
            hint="Use a k3s cluster (`libresh bootstrap ssh HOST` makes one).",
        )


def _what_is_installed(profile: Profile) -> str:
    shown = {
        "helm-chart": "{name} {version}",
        "helm-chart-config": "settings for k3s' {name}",
        "manifests": "{name} {version}",
        "k3s-addon": "a check of k3s' {name}",
    }
    parts = [
        shown.get(c.kind, "{name}").format(name=c.name, version=c.version)
        for c in profile.components
    ]
    issuers = ", ".join(i.name for i in profile.issuers)
    return f"profile {profile.name}: {', '.join(parts)}, and the ClusterIssuers {issuers}"


def check_email(email: str) -> str:
    if not EMAIL.fullmatch(email):
        raise BadInputError(
            f"--email {email!r} is not an email address.",
            hint="Let's Encrypt writes to it before certificates expire: give one you read.",
        )
    return email


def saved_settings(kube: KubeClient) -> dict[str, str]:
    settings, _ = SETTINGS.read(kube)
    return dict(settings or {})


def plan(
    kube: KubeClient,
    profile: Profile,
    email: str,
    cluster: Cluster,
    secrets: list[dict[str, Any]] | None = None,
) -> list[Change]:
    """What applying would change, from the API server's own dry run."""
    issuers_ready = _crd_established(kube, ISSUER_CRD)
    objects = [
        *(secrets or []),
        *profile_manifests(profile, cluster),
        *issuer_manifests(profile, email),
    ]
    actions: dict[int, str] = {}
    lives: dict[int, dict[str, Any]] = {}
    for index, manifest in enumerate(objects):
        if manifest["kind"] == "ClusterIssuer" and not issuers_ready:
            actions[index] = "create later"
            continue
        metadata = manifest["metadata"]
        live = kube.get(manifest["apiVersion"], manifest["kind"], metadata["name"],
                        metadata.get("namespace"))  # fmt: skip
        if live is None:
            actions[index] = "create"
        else:
            lives[index] = live
    # The existing objects' dry runs, concurrently: one round trip's time, not one each.
    dry_runs = kube.apply_all([objects[i] for i in lives], dry_run=True)
    for (index, live), would_be in zip(lives.items(), dry_runs, strict=True):
        actions[index] = "unchanged" if normalize(would_be) == normalize(live) else "update"
    return [Change(m["kind"], m["metadata"]["name"], actions[i]) for i, m in enumerate(objects)]


@dataclass(frozen=True)
class HcloudAccess:
    """The Hetzner Cloud API token (and private network) the `ha` profile's charts read."""

    token: str = field(repr=False)
    network: str | None = None


def plan_install(
    kube: KubeClient,
    profile_name: str | None,
    email: str | None,
    hcloud: HcloudAccess | None = None,
    ask_email: Callable[[], str] | None = None,
    location: str | None = None,
) -> tuple[Profile, InstallResult]:
    """What installing (or upgrading to this release's pins) would change. The profile, the
    email and the hcloud settings default to the ones kept in the cluster; a missing email is
    asked for once."""
    require_k3s(kube, profile_name)
    settings = saved_settings(kube)
    email = email or settings.get("email") or (ask_email() if ask_email else _no_email())
    email = check_email(email)
    profile = load_profile(profile_name or settings.get("profile") or "single")
    kept = {"profile": profile.name, "email": email}
    location = location or settings.get("hcloud-location")
    if location is not None:
        kept["hcloud-location"] = check_location(location)
    network = (
        (hcloud.network if hcloud else None)
        or settings.get("hcloud-network")
        or (None if hcloud else _kept_network(kube, profile))
    )
    if network:
        kept["hcloud-network"] = network
    if "location" in profile.needs and location is None:
        raise PrerequisiteError(
            f"The {profile.name} profile needs the Hetzner location of the load balancer in "
            "front of Traefik (the hcloud cloud-controller-manager makes none without one), "
            "and none was given yet.",
            hint="Give it once with --hcloud-location (e.g. fsn1: the location of the first "
            "server); `libresh cluster create` gives it itself.",
        )
    cluster = Cluster(location, bool(network), packaged_charts(kube, profile, strict=True))
    secrets = _secret_manifests(kube, profile, hcloud, network)
    changes = plan(kube, profile, email, cluster, secrets)
    result = InstallResult(profile.name, email, cluster, kept, changes, secrets)
    return profile, result


def install(
    kube: KubeClient,
    profile_name: str | None,
    email: str | None,
    reporter: Reporter,
    *,
    hcloud: HcloudAccess | None = None,
    location: str | None = None,
    ask_email: Callable[[], str] | None = None,
    busy: Callable[[str], AbstractContextManager[object]] | None = None,
    dry_run: bool = False,
) -> InstallResult:
    """`libresh infra install` (and `cluster create`'s last step): plan, then apply what
    changes, unless a dry run or nothing changes. `busy` wraps the applying (a spinner: only
    then, since planning may ask for the email)."""
    profile, result = plan_install(kube, profile_name, email, hcloud, ask_email, location)
    if not dry_run and not result.nothing_to_do:
        with (busy or _not_shown)(f"Installing the {profile.name} infrastructure profile"):
            apply_install(kube, profile, result, reporter)
    return result


def _not_shown(message: str) -> AbstractContextManager[object]:
    return nullcontext()


def _kept_network(kube: KubeClient, profile: Profile) -> str | None:
    """The network named in the hcloud Secret, for clusters installed before the setting was
    kept in libresh-infra."""
    for name in sorted({c.secret for c in profile.components if c.secret}):
        network = read_secret(kube, name, HELM_NAMESPACE).get("network")
        if network:
            return network
    return None


def check_location(location: str) -> str:
    if not LOCATION.fullmatch(location):
        raise BadInputError(
            f"--hcloud-location {location!r} is not a Hetzner location name.",
            hint="Use the location of the cluster's first server, e.g. fsn1, nbg1 or hel1.",
        )
    return location


def packaged_charts(kube: KubeClient, profile: Profile, *, strict: bool) -> dict[str, str]:
    """For each component configuring a chart k3s packages: the chart version its HelmChart
    (same name, kube-system, made by k3s) installs, when there is one. Strict (install): a
    chart older than the profile's values are written for is refused."""
    found: dict[str, str] = {}
    for component in profile.components:
        if component.packaged is None:
            continue
        chart = kube.get(HELM_API, "HelmChart", component.name, HELM_NAMESPACE)
        match = PACKAGED_CHART.search(str(((chart or {}).get("spec") or {}).get("chart") or ""))
        if match is None:
            continue
        version = match.group(2) or match.group(1)
        oldest = component.packaged.supported_from
        if strict and chart_version(version) < chart_version(oldest):
            raise PrerequisiteError(
                f"k3s runs the {component.name} chart {version}; libresh's values for it are "
                f"written for {oldest} and later.",
                hint=f"Move k3s to {component.packaged.default_k3s} or later "
                "(`libresh cluster upgrade`), then run this again.",
            )
        found[component.name] = version
    return found


def secret_data(token: str, network: str | None) -> dict[str, str]:
    """The hcloud Secret's keys, as the charts read them (HCLOUD_TOKEN from `token`; with
    networking enabled, HCLOUD_NETWORK from `network`). Without a private network there is
    no `network` key, and the profile turns the CCM's networking off."""
    return {"token": token, **({"network": network} if network else {})}


def _secret_manifests(
    kube: KubeClient, profile: Profile, hcloud: HcloudAccess | None, network: str | None
) -> list[dict[str, Any]]:
    names = sorted({c.secret for c in profile.components if c.secret})
    if hcloud is None:
        missing = [n for n in names if kube.get("v1", "Secret", n, HELM_NAMESPACE) is None]
        if missing:
            raise PrerequisiteError(
                f"The {profile.name} profile needs the Hetzner Cloud API token (Secret "
                f"{missing[0]} in kube-system), and none was given yet.",
                hint="Give it once with --hcloud-token-file FILE (the token alone, mode 0600).",
            )
        return []
    data = secret_data(hcloud.token, network)
    # `data`, not stringData: server-side apply then removes a key no longer given (e.g.
    # `network`), which it cannot do for the write-only stringData.
    return [secret_manifest(name, HELM_NAMESPACE, data, LABELS) for name in names]


def apply_install(
    kube: KubeClient, profile: Profile, result: InstallResult, reporter: Reporter
) -> None:
    """Apply the planned profile (settings and Secrets first), wait for cert-manager, then
    apply the issuers."""
    _save_settings(kube, result.settings)
    for secret in result.secrets:
        kube.apply(secret)
    reporter.step(f"Applying profile {profile.name}")
    kube.apply_all(profile_manifests(profile, result.cluster))
    _wait_for_issuer_crd(kube, reporter)
    for manifest in issuer_manifests(profile, result.email):
        kube.apply(manifest)
    changed = sum(1 for c in result.changes if c.action != "unchanged")
    reporter.done(f"Profile {profile.name}: {changed} object(s) created or updated")


def _no_email() -> str:
    raise BadInputError(
        "Let's Encrypt needs a contact email, and none was given yet.",
        hint="Give it once with --email you@example.org; later runs reuse it.",
    )


def _save_settings(kube: KubeClient, settings: dict[str, str]) -> None:
    SETTINGS.write(kube, settings)


def _crd_established(kube: KubeClient, name: str) -> bool:
    crd = kube.get(*CRD_API, name)
    return crd is not None and custom_resource_definition(crd).ready


def _wait_for_issuer_crd(kube: KubeClient, reporter: Reporter) -> None:
    reporter.step("Waiting for k3s' helm-controller to install cert-manager")
    try:
        wait_for(
            "cert-manager's CRDs",
            lambda: True if _crd_established(kube, ISSUER_CRD) else None,
            timeout=CHARTS_TIMEOUT,
            interval=1.0,
            max_interval=5.0,
        )
    except WaitTimeoutError as error:
        raise OperationFailedError(
            f"cert-manager was not installed within {CHARTS_TIMEOUT:.0f} s, so the "
            "ClusterIssuers could not be made yet.",
            hint="See why: `kubectl -n kube-system logs job/helm-install-cert-manager`. "
            "Then run `libresh infra install` again: it goes on from there.",
        ) from error


# -- status --------------------------------------------------------------------------------


@dataclass
class ComponentStatus:
    name: str
    pinned: str
    running: str | None
    health: str  # healthy | installing | install failed | degraded | missing
    detail: str
    memory_requests: int  # bytes, all replicas


def status(kube: KubeClient) -> dict[str, Any]:
    require_k3s(kube)
    settings = saved_settings(kube)
    profile = load_profile(settings.get("profile", "single"))
    cluster = Cluster(
        settings.get("hcloud-location"),
        bool(settings.get("hcloud-network")),
        packaged_charts(kube, profile, strict=False),
    )
    components = [_component_status(kube, c, cluster) for c in profile.components]
    issuers_served = _crd_established(kube, ISSUER_CRD)
    issuers = [_issuer_status(kube, i.name, issuers_served) for i in profile.issuers]
    total = sum(c.memory_requests for c in components)
    return {
        "profile": profile.name,
        "email": settings.get("email"),
        "components": [c.__dict__ for c in components],
        "issuers": issuers,
        "memory_requests_bytes": total,
        "memory_requests": f"{total / MIB:.0f}Mi",
        "healthy": all(c.health == "healthy" for c in components)
        and all(i["ready"] for i in issuers),
    }


def _component_status(kube: KubeClient, component: Component, cluster: Cluster) -> ComponentStatus:
    pinned = component.version or "shipped with k3s"
    kind = {"helm-chart": "HelmChart", "helm-chart-config": "HelmChartConfig"}.get(component.kind)
    helm_object = kind and kube.get(HELM_API, kind, component.name, HELM_NAMESPACE)
    if kind and helm_object is None:
        return ComponentStatus(component.name, pinned, None, "missing", "not installed", 0)
    # Values written for another chart than k3s runs: said whatever else is wrong.
    values = _values_problem(helm_object, component, cluster) if helm_object else None
    # helm-controller installs a chart (k3s' own too) in the Job helm-install-NAME.
    install_job = kind and kube.get("batch/v1", "Job", f"helm-install-{component.name}",
                                    HELM_NAMESPACE)  # fmt: skip
    if install_job and job(install_job).failed:
        detail = "; ".join(
            filter(None, [f"job/helm-install-{component.name} in kube-system failed", values])
        )
        return ComponentStatus(component.name, pinned, None, "install failed", detail, 0)
    deployments = [
        kube.get("apps/v1", "Deployment", w, component.namespace) for w in component.workloads
    ]
    if any(d is None for d in deployments):
        detail = "; ".join(filter(None, ["workloads not created yet", values]))
        health = "degraded" if values else "installing"
        return ComponentStatus(component.name, pinned, None, health, detail, 0)
    found = [d for d in deployments if d is not None]
    problems = [f"not ready: {d['metadata']['name']}" for d in found if not deployment(d).ready]
    storage = _storage_class_problem(kube, component.storage_class)
    problems += [storage] if storage else []
    problems += [values] if values else []
    address, balancer = _load_balancer(kube, component)
    problems += [balancer] if balancer else []
    labels = found[0]["metadata"].get("labels") or {}
    # Charts label their version differently: the app's version, else the chart's.
    running = labels.get("app.kubernetes.io/version") or labels.get("helm.sh/chart")
    healthy = _healthy_detail(kube, component, len(found))
    return ComponentStatus(
        component.name,
        pinned,
        running,
        "degraded" if problems else "healthy",
        "; ".join(problems) or (f"{healthy}; address {address}" if address else healthy),
        sum(_memory_requests(d) for d in found),
    )


def _values_problem(live: dict[str, Any], component: Component, cluster: Cluster) -> str | None:
    """For a chart k3s packages: are the live values the ones written for the chart k3s runs
    now? (Moving k3s to another release can change the chart and its keys.)"""
    if component.packaged is None:
        return None
    chart = packaged_chart(component, cluster)
    try:
        wanted = component_values(component, cluster)
    except BadInputError as error:
        return f"values cannot be made: {error.message}"
    try:
        live_values = yamlfile.load(
            (live.get("spec") or {}).get("valuesContent") or "{}",
            source=f"the valuesContent of HelmChart {component.name}",
        )
    except yamlfile.YamlRefusedError as error:
        return f"values cannot be read: {error.reason}"
    if live_values != wanted:
        return (
            f"values are not the ones for the chart k3s runs ({chart}): run `libresh infra upgrade`"
        )
    return None


def _load_balancer(kube: KubeClient, component: Component) -> tuple[str | None, str | None]:
    """(address, problem) of the component's LoadBalancer Service: nothing answers on 80/443
    until something (k3s' servicelb, the hcloud CCM) has given it an address."""
    if component.load_balancer is None:
        return None, None
    name, namespace = component.load_balancer, component.namespace
    service = kube.get("v1", "Service", name, namespace)
    if service is None:
        return None, f"no Service {name}"
    if (service.get("spec") or {}).get("type") != "LoadBalancer":
        return None, None
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    addresses = [
        i.get("ip") or i.get("hostname") for i in ingress if i.get("ip") or i.get("hostname")
    ]
    if not addresses:
        return None, (
            f"Service {name} has no load balancer address yet: nothing answers on ports 80 "
            f"and 443 (`kubectl -n {namespace} describe service {name}` says why)"
        )
    return ", ".join(addresses), None


def _storage_class_problem(kube: KubeClient, name: str | None) -> str | None:
    if name is None:
        return None
    found = kube.get("storage.k8s.io/v1", "StorageClass", name)
    if found is None:
        return f"no StorageClass {name}"
    annotations = found["metadata"].get("annotations") or {}
    if annotations.get("storageclass.kubernetes.io/is-default-class") != "true":
        return f"StorageClass {name} is not the default one"
    return None


def _healthy_detail(kube: KubeClient, component: Component, workloads: int) -> str:
    detail = f"{workloads} workload(s) ready"
    if component.storage_class == "local-path":
        config = kube.get("v1", "ConfigMap", "local-path-config", HELM_NAMESPACE)
        paths = _local_path_dirs(((config or {}).get("data") or {}).get("config.json", "{}"))
        detail += f"; volumes in {', '.join(paths) or '(unknown)'} (default StorageClass)"
    elif component.storage_class:
        detail += f"; default StorageClass {component.storage_class}"
    return detail


def _local_path_dirs(config_json: str) -> list[str]:
    try:
        config = json.loads(config_json)
    except ValueError:
        return []
    return [path for entry in config.get("nodePathMap") or [] for path in entry.get("paths") or []]


def _memory_requests(manifest: dict[str, Any]) -> int:
    spec = manifest.get("spec") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    per_pod = sum(
        quantity(((c.get("resources") or {}).get("requests") or {}).get("memory", 0))
        for c in containers
    )
    return int(per_pod * int(spec.get("replicas", 1)))


def _issuer_status(kube: KubeClient, name: str, served: bool) -> dict[str, Any]:
    found = kube.get("cert-manager.io/v1", "ClusterIssuer", name) if served else None
    if found is None:
        return {"name": name, "ready": False, "detail": "not created yet"}
    conditions = (found.get("status") or {}).get("conditions") or []
    ready: dict[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
    return {
        "name": name,
        "ready": ready.get("status") == "True",
        "detail": ready.get("message") or "no Ready condition yet",
    }
