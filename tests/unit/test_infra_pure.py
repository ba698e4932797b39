"""Infra profiles and the objects they become, without a cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from libresh_cli.errors import BadInputError, PrerequisiteError
from libresh_cli.infra.profile import Component, load_profile, parse_profile, profile_names
from libresh_cli.infra.render import (
    Cluster,
    component_manifest,
    component_manifests,
    component_values,
    issuer_manifests,
    profile_manifests,
)
from libresh_cli.infra.service import check_email, check_location, packaged_charts, secret_data

FIXTURES = Path(__file__).parents[1] / "fixtures" / "infra"
TRAEFIK_CHARTS = sorted((FIXTURES / "traefik-chart").glob("*.yaml"))
HA = Cluster(location="fsn1", private_network=True)


def component(profile: str, name: str) -> Component:
    return next(c for c in load_profile(profile).components if c.name == name)


def test_single_profile_is_pinned_and_small() -> None:
    profile = load_profile("single")
    assert "single" in profile_names()
    charts = [c for c in profile.components if c.kind == "helm-chart"]
    assert charts and all(c.version and c.repo and c.chart for c in charts)
    manifests = profile_manifests(profile, Cluster())
    helm = {(m["kind"], m["metadata"]["name"]) for m in manifests if "helm" in m["apiVersion"]}
    assert helm == {("HelmChart", "cert-manager"), ("HelmChartConfig", "traefik")}
    assert all(
        m["metadata"].get("namespace") == "kube-system"
        for m in manifests
        if "helm" in m["apiVersion"]
    )
    kinds = {m["kind"] for m in manifests}
    assert {"Deployment", "ClusterRoleBinding"} <= kinds
    assert all(
        m["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "libresh" for m in manifests
    )


def test_helm_chart_object() -> None:
    cert_manager = next(c for c in load_profile("single").components if c.name == "cert-manager")
    manifest = component_manifest(cert_manager, Cluster())
    assert manifest["apiVersion"] == "helm.cattle.io/v1"
    assert manifest["spec"]["createNamespace"] is True
    assert "bootstrap" not in manifest["spec"]  # an ordinary chart: installed once nodes are up
    assert yaml.safe_load(manifest["spec"]["valuesContent"]) == cert_manager.values
    assert manifest["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "libresh"


def test_issuers_carry_the_email() -> None:
    issuers = issuer_manifests(load_profile("single"), "ops@coop.example")
    assert [i["metadata"]["name"] for i in issuers] == [
        "letsencrypt-staging",
        "letsencrypt-production",
    ]
    assert all(i["spec"]["acme"]["email"] == "ops@coop.example" for i in issuers)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"components": []}, "`profile` is missing"),
        (
            {"profile": "x", "components": [{"name": "a", "kind": "kustomize"}]},
            "components[0].kind",
        ),
        (
            {"profile": "x", "components": [{"name": "a", "kind": "helm-chart", "namespace": "n"}]},
            "components[0]: `repo` is missing",
        ),
    ],
)
def test_profile_mistakes_name_their_field(data: object, message: str) -> None:
    with pytest.raises(BadInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_profile(data, "p.yaml")


def test_email_check() -> None:
    assert check_email("a@b.org") == "a@b.org"
    with pytest.raises(BadInputError, match="not an email"):
        check_email("a@b")


def test_ha_profile_extends_single_without_local_path() -> None:
    ha, single = load_profile("ha"), load_profile("single")
    names = [c.name for c in ha.components]
    assert "local-path" in [c.name for c in single.components] and "local-path" not in names
    assert {"cert-manager", "traefik", "system-upgrade-controller"} <= set(names)
    hcloud = [c for c in ha.components if c.name.startswith("hcloud")]
    assert [c.name for c in hcloud] == ["hcloud-cloud-controller-manager", "hcloud-csi"]
    assert all(c.version and c.secret == "hcloud" for c in hcloud)
    csi = hcloud[1]
    assert csi.storage_class == "hcloud-volumes"
    assert csi.values["storageClasses"][0]["reclaimPolicy"] == "Retain"
    assert ha.issuers == single.issuers


def test_k3s_settings_of_the_profiles() -> None:
    from libresh_cli.cluster.k3s import wanted_settings

    ha = wanted_settings("ha", address="10.0.0.2", node_name="s1")
    assert "flannel-backend" not in ha  # chosen per cluster (private network or WireGuard)
    assert set(ha["disable"]) == {"servicelb", "local-storage"}
    assert ha["kubelet-arg"] == ["cloud-provider=external"]
    single = wanted_settings("single", address="x", node_name="n", storage_path="/srv/data/")
    assert single["default-local-storage-path"] == "/srv/data"
    with pytest.raises(BadInputError, match="plain absolute path"):
        wanted_settings("single", address="x", node_name="n", storage_path="data")


def test_local_path_config() -> None:
    from libresh_cli.infra.service import _local_path_dirs

    config = '{"nodePathMap":[{"node":"DEFAULT_PATH_FOR_NON_LISTED_NODES","paths":["/srv/v"]}]}'
    assert _local_path_dirs(config) == ["/srv/v"]
    assert _local_path_dirs("not json") == []


def test_single_profile_footprint_is_under_the_target() -> None:
    from libresh_cli.infra.footprint import SINGLE_TARGET_MIB, declared_requests

    requests = declared_requests(load_profile("single"))
    mib = {name: value // 1024**2 for name, value in requests.items()}
    assert mib == {
        "cert-manager": 120,
        "traefik": 64,
        "system-upgrade-controller": 32,
        "local-path": 0,
    }
    assert sum(requests.values()) <= SINGLE_TARGET_MIB * 1024**2


# -- the hcloud cloud-controller-manager ----------------------------------------------------


def test_the_ccm_is_a_bootstrap_chart() -> None:
    """helm-controller tolerates node.cloudprovider.kubernetes.io/uninitialized only in a
    bootstrap chart's install Job (k3s-io/helm-controller pkg/controllers/chart/chart.go); every
    node carries that taint until the CCM runs, so without it the install never starts."""
    ccm = component_manifest(component("ha", "hcloud-cloud-controller-manager"), HA)
    assert ccm["spec"]["bootstrap"] is True
    others = [
        c for c in load_profile("ha").components if c.kind == "helm-chart" and not c.bootstrap
    ]
    assert {c.name for c in others} == {"cert-manager", "hcloud-csi"}
    with pytest.raises(BadInputError, match="only a helm-chart can be a bootstrap chart"):
        parse_profile(
            {"profile": "x", "components": [
                {"name": "a", "kind": "helm-chart-config", "namespace": "n", "bootstrap": True}
            ]},
            "p.yaml",
        )  # fmt: skip


def _leaf_paths(tree: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(tree, dict) and tree:
        return [p for k, v in tree.items() for p in _leaf_paths(v, (*prefix, str(k)))]
    return [prefix]


def _at(tree: Any, path: list[str] | tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


@pytest.mark.parametrize("private_network", [True, False])
def test_ccm_networking_follows_the_private_network(private_network: bool) -> None:
    """hcloud-cloud-controller-manager chart 1.27.0 (its values.yaml, kept in the fixtures):
    networking.enabled reads HCLOUD_NETWORK from the Secret's `network` key, not optional, so
    without a private network it must be off (and the Secret has no `network` key); with one,
    the pod range is k3s' 10.42.0.0/16, not the chart's default 10.244.0.0/16."""
    chart = yaml.safe_load((FIXTURES / "hcloud-ccm-1.27.0-values.yaml").read_text())
    cluster = Cluster(location="fsn1", private_network=private_network)
    values = component_values(component("ha", "hcloud-cloud-controller-manager"), cluster)
    data = secret_data("t" * 64, "coop" if private_network else None)
    if private_network:
        assert values["networking"] == {"enabled": True, "clusterCIDR": "10.42.0.0/16"}
        assert chart["networking"]["clusterCIDR"] == "10.244.0.0/16"  # what is overridden
        reference = chart["networking"]["network"]["valueFrom"]["secretKeyRef"]
        assert reference["key"] in data and not reference.get("optional")
    else:
        assert values["networking"] == {"enabled": False}
        assert "network" not in data
    for path in _leaf_paths(values):  # every key libresh sets is one the chart has
        assert _at(chart, path[:-1]) is not None and path[-1] in _at(chart, path[:-1]), path


# -- Traefik: the Hetzner load balancer, the chart k3s packages -----------------------------


def test_traefiks_service_asks_the_ccm_for_a_load_balancer() -> None:
    """hcloud CCM: no load balancer without load-balancer.hetzner.cloud/location or
    /network-zone (internal/hcops/load_balancer.go); use-private-ip reaches the nodes on the
    private network (internal/annotation/load_balancer.go)."""
    traefik = component("ha", "traefik")
    annotations = component_values(traefik, HA)["service"]["annotations"]
    assert annotations == {
        "load-balancer.hetzner.cloud/location": "fsn1",
        "load-balancer.hetzner.cloud/use-private-ip": "true",
    }
    public = component_values(traefik, Cluster(location="hel1"))["service"]["annotations"]
    assert public == {"load-balancer.hetzner.cloud/location": "hel1"}
    with pytest.raises(BadInputError, match="location is not known"):
        component_values(traefik, Cluster())
    assert "service" not in component_values(component("single", "traefik"), Cluster())
    assert load_profile("ha").needs == ("location",) and load_profile("single").needs == ()
    assert check_location("nbg1") == "nbg1"
    with pytest.raises(BadInputError, match="not a Hetzner location"):
        check_location("Falkenstein 1")


def _validate(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """A MODEL of the JSON-schema checks Helm runs on values (the subset these schemas use:
    type, properties, additionalProperties), to test values against a chart's real schema."""
    kinds: dict[str, type | tuple[type, ...]] = {
        "object": dict, "string": str, "boolean": bool, "integer": int, "array": list,
        "null": type(None), "number": (int, float),
    }  # fmt: skip
    wanted = schema.get("type")
    if wanted is not None:
        names = wanted if isinstance(wanted, list) else [wanted]
        if not any(isinstance(value, kinds[n]) for n in names):
            return [f"{path}: not {wanted}"]
    if not isinstance(value, dict):
        return []
    errors = []
    properties = schema.get("properties") or {}
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            errors += _validate(item, properties[key], f"{path}.{key}")
        elif extra is False:
            errors.append(f"{path}.{key}: additional property not allowed")
        elif isinstance(extra, dict):
            errors += _validate(item, extra, f"{path}.{key}")
    return errors


REDIRECT = {"to": "websecure", "scheme": "https", "permanent": True}


@pytest.mark.parametrize("fixture", TRAEFIK_CHARTS, ids=lambda p: p.stem)
@pytest.mark.parametrize("profile", ["single", "ha"])
def test_traefik_values_fit_the_packaged_chart(fixture: Path, profile: str) -> None:
    """For each chart k3s packages: the values pass that chart's values.schema.json, and the
    redirect sits where its template reads it (traefik/traefik-helm-chart, fixtures)."""
    chart = yaml.safe_load(fixture.read_text())
    cluster = Cluster(location="fsn1", private_network=True, charts={"traefik": chart["chart"]})
    values = component_values(component(profile, "traefik"), cluster)
    assert _validate(values, chart["schema"]) == []
    assert _at(values, chart["redirect_path"]) == REDIRECT
    other = (
        ["ports", "web", "redirections", "entryPoint"]
        if "http" in chart["redirect_path"]
        else ["ports", "web", "http", "redirections", "entryPoint"]
    )
    assert _at(values, other) is None


def test_the_wrong_redirect_shape_fails_or_does_nothing() -> None:
    """Why the shape is chosen by chart: chart 39 refuses the old key, chart 38 ignores the new
    one (no redirect at all)."""
    charts = {p.stem: yaml.safe_load(p.read_text()) for p in TRAEFIK_CHARTS}
    traefik = component("single", "traefik")
    old = component_values(traefik, Cluster(charts={"traefik": "38.0.2"}))
    new = component_values(traefik, Cluster(charts={"traefik": "39.0.5"}))
    assert _validate(old, charts["39.0.5"]["schema"]) == [
        ".ports.web.redirections: additional property not allowed"
    ]
    assert _validate(new, charts["38.0.2"]["schema"]) == []
    assert _at(new, charts["38.0.2"]["redirect_path"]) is None


def test_packaged_charts_are_pinned_per_k3s_release() -> None:
    from libresh_cli.cluster.k3s import DEFAULT_K3S_VERSION

    packaged = component("single", "traefik").packaged
    assert packaged is not None
    assert packaged.default_k3s == DEFAULT_K3S_VERSION  # the chart assumed without a HelmChart
    assert packaged.default_chart == "38.0.2"
    assert set(packaged.releases.values()) == {p.stem for p in TRAEFIK_CHARTS}  # each tested
    assert all(tuple(map(int, c.split("."))) >= (34, 0, 0) for c in packaged.releases.values())


class _Charts:
    """A cluster with only k3s' HelmChart traefik (as k3s writes it)."""

    def __init__(self, chart: str | None) -> None:
        self.chart = chart

    def get(self, api: str, kind: str, name: str, namespace: str | None = None) -> Any:
        assert (kind, name, namespace) == ("HelmChart", "traefik", "kube-system")
        return {"spec": {"chart": self.chart}} if self.chart else None


@pytest.mark.parametrize(
    ("chart", "found"),
    [
        ("https://%{KUBERNETES_API}%/static/charts/traefik-38.0.201+up38.0.2.tgz", "38.0.2"),
        ("https://%{KUBERNETES_API}%/static/charts/traefik-39.0.501+up39.0.5.tgz", "39.0.5"),
        ("https://%{KUBERNETES_API}%/static/charts/traefik-37.1.0.tgz", "37.1.0"),
        (None, None),
    ],
)
def test_the_packaged_chart_is_read_from_k3s_helmchart(chart: str | None, found: str) -> None:
    charts = packaged_charts(_Charts(chart), load_profile("single"), strict=True)  # type: ignore[arg-type]
    assert charts == ({"traefik": found} if found else {})


def test_a_chart_older_than_the_values_is_refused() -> None:
    old = _Charts("https://%{KUBERNETES_API}%/static/charts/traefik-27.0.201+up27.0.2.tgz")
    with pytest.raises(PrerequisiteError, match=r"written for 34\.0\.0 and later"):
        packaged_charts(old, load_profile("single"), strict=True)  # type: ignore[arg-type]
    assert packaged_charts(old, load_profile("single"), strict=False) == {"traefik": "27.0.2"}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ([{"when": {"zone": "x"}, "values": {}}], r"variants\[0\].when: zone not one of"),
        ([{"when": {"chart_min": "39"}, "values": {}}], "is not X.Y.Z"),
        ([{"when": {}}], r"variants\[0\]: `values` is missing"),
    ],
)
def test_variant_mistakes_name_their_field(variants: list[Any], message: str) -> None:
    data = {"profile": "x", "components": [
        {"name": "a", "kind": "k3s-addon", "namespace": "n", "variants": variants}
    ]}  # fmt: skip
    with pytest.raises(BadInputError, match=message):
        parse_profile(data, "p.yaml")


def test_requests_do_not_depend_on_the_cluster() -> None:
    """The footprint sums a component's own values: no variant may set resources."""
    for name in profile_names():
        for c in load_profile(name).components:
            assert all("resources" not in v.values for v in c.variants), c.name


# -- system-upgrade-controller ----------------------------------------------------------------


def test_the_controller_brings_its_own_plan_crd() -> None:
    """system-upgrade-controller v0.14.2 creates and updates plans.upgrade.cattle.io when it
    starts (rancher/system-upgrade-controller pkg/upgrade/controller.go registerCRD): libresh
    applies none, or the two would fight over its schema."""
    suc = component("single", "system-upgrade-controller")
    kinds = [m["kind"] for m in component_manifests(suc, Cluster())]
    assert "CustomResourceDefinition" not in kinds and "Deployment" in kinds
    upstream = yaml.safe_load(
        (FIXTURES / "system-upgrade-controller-v0.14.2-plan-crd.yaml").read_text()
    )
    assert upstream["metadata"]["name"] == "plans.upgrade.cattle.io"
