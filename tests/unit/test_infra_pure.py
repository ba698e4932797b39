"""Infra profiles and the objects they become, without a cluster."""

from __future__ import annotations

import pytest
import yaml

from libresh_cli.errors import BadInputError
from libresh_cli.infra.profile import load_profile, parse_profile, profile_names
from libresh_cli.infra.render import component_manifest, issuer_manifests, profile_manifests
from libresh_cli.infra.service import check_email


def test_single_profile_is_pinned_and_small() -> None:
    profile = load_profile("single")
    assert "single" in profile_names()
    charts = [c for c in profile.components if c.kind == "helm-chart"]
    assert charts and all(c.version and c.repo and c.chart for c in charts)
    manifests = profile_manifests(profile)
    helm = {(m["kind"], m["metadata"]["name"]) for m in manifests if "helm" in m["apiVersion"]}
    assert helm == {("HelmChart", "cert-manager"), ("HelmChartConfig", "traefik")}
    assert all(
        m["metadata"].get("namespace") == "kube-system"
        for m in manifests
        if "helm" in m["apiVersion"]
    )
    kinds = {m["kind"] for m in manifests}
    assert {"CustomResourceDefinition", "Deployment", "ClusterRoleBinding"} <= kinds
    assert all(
        m["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "libresh" for m in manifests
    )


def test_helm_chart_object() -> None:
    cert_manager = next(c for c in load_profile("single").components if c.name == "cert-manager")
    manifest = component_manifest(cert_manager)
    assert manifest["apiVersion"] == "helm.cattle.io/v1"
    assert manifest["spec"]["createNamespace"] is True
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
