"""`libresh infra` on the lab's real API server. The lab is not k3s: a fixture registers the
helm-controller's and cert-manager's kinds with upstream's own CRDs (their schemas, from the
pinned Go modules: tests/upstream.py), so the API server validates libresh's HelmCharts and
ClusterIssuers as a k3s server would, and creates the Deployments a chart would run where
`infra status` needs them (a stand-in for the charts' controllers, named as such). What is
checked is what libresh applies and reads."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from libresh_cli.kube.client import KubeClient
from tests.integration.conftest import Lab
from tests.integration.test_prompts import Terminal
from tests.upstream import k3s_crds

LIBRESH = str(Path(sys.executable).parent / "libresh")
# The Plan CRD as system-upgrade-controller v0.14.2 registers it when it starts (see the file).
PLAN_CRD = (
    Path(__file__).parents[1]
    / "fixtures"
    / "infra"
    / "system-upgrade-controller-v0.14.2-plan-crd.yaml"
)
CRD_API = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
HELM = "helm.cattle.io/v1"


def libresh(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LIBRESH, "--kubeconfig", str(lab.kubeconfig), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**lab.cli_env(), "COLUMNS": "200"},
    )


def test_a_cluster_that_is_not_k3s_is_refused(lab: Lab) -> None:
    result = libresh(lab, "infra", "install", "--email", "ops@coop.example")
    assert result.returncode == 6
    assert "helmcharts.helm.cattle.io" in result.stderr and "not k3s" in result.stderr


def test_cluster_upgrade_needs_the_controller(lab: Lab) -> None:
    result = libresh(lab, "cluster", "upgrade", "--k3s-version", "v1.35.1+k3s1")
    assert result.returncode == 6 and "libresh infra install" in result.stderr


@pytest.fixture(scope="module")
def k3s_kinds(lab: Lab) -> Iterator[None]:
    documents = k3s_crds()
    with lab.kube() as kube:
        for crd in documents:
            kube.apply(crd)
        deadline = time.monotonic() + 30
        while not all(_established(kube, d["metadata"]["name"]) for d in documents):
            assert time.monotonic() < deadline, "upstream CRDs not established"
            time.sleep(0.2)
    yield
    with lab.kube() as kube:
        kube.delete(HELM, "HelmChart", "traefik", "kube-system")  # before its kind goes
        for crd in documents:
            kube.delete(*CRD_API, crd["metadata"]["name"])
        kube.delete("v1", "Namespace", "cert-manager")
        kube.delete("v1", "Namespace", "system-upgrade")
        kube.delete(*CRD_API, "plans.upgrade.cattle.io")
        kube.delete("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "system-upgrade")
        kube.delete("v1", "ConfigMap", "libresh-infra", "libresh-system")
        kube.delete("apps/v1", "Deployment", "traefik", "kube-system")
        kube.delete("v1", "Service", "traefik", "kube-system")
        kube.delete("apps/v1", "Deployment", "local-path-provisioner", "kube-system")
        kube.delete("storage.k8s.io/v1", "StorageClass", "local-path")
        kube.delete("v1", "Secret", "hcloud", "kube-system")


def _established(kube: KubeClient, name: str) -> bool:
    crd = kube.get(*CRD_API, name)
    conditions = ((crd or {}).get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def _get(lab: Lab, api: str, kind: str, name: str, namespace: str | None = None) -> Any:
    with lab.kube() as kube:  # a new client: it discovers the kinds registered meanwhile
        return kube.get(api, kind, name, namespace)


def test_the_email_is_asked_at_a_terminal(lab: Lab, k3s_kinds: None) -> None:
    argv = [LIBRESH, "--kubeconfig", str(lab.kubeconfig), "infra", "install", "--dry-run"]
    terminal = Terminal(argv, {**lab.cli_env(), "COLUMNS": "200"})
    terminal.expect("Contact email for Let's Encrypt")
    terminal.type("not-an-address\r")
    terminal.expect("Give an email address.")
    terminal.type("\x15ops@coop.example\r")  # Ctrl-U clears the wrong answer first
    assert terminal.exit_code() == 0, terminal.screen()
    assert "Dry run: nothing was changed." in terminal.screen()
    assert _get(lab, "v1", "ConfigMap", "libresh-infra", "libresh-system") is None


def test_install_applies_the_profile(lab: Lab, k3s_kinds: None) -> None:
    result = libresh(lab, "-o", "json", "infra", "install", "--email", "ops@coop.example")
    assert result.returncode == 0, result.stderr
    changes = {(c["kind"], c["name"]): c["action"] for c in json.loads(result.stdout)["changes"]}
    assert set(changes.values()) == {"create"}
    assert {("HelmChart", "cert-manager"), ("HelmChartConfig", "traefik"),
            ("ClusterIssuer", "letsencrypt-production"),
            ("Deployment", "system-upgrade-controller")} <= set(changes)  # fmt: skip
    # The controller registers its Plan CRD itself when it starts: libresh makes none.
    assert "CustomResourceDefinition" not in {kind for kind, _ in changes}
    assert _get(lab, *CRD_API, "plans.upgrade.cattle.io") is None

    chart = _get(lab, HELM, "HelmChart", "cert-manager", "kube-system")
    assert chart["spec"]["repo"] == "https://charts.jetstack.io"
    assert (chart["spec"]["chart"], chart["spec"]["version"]) == ("cert-manager", "v1.19.4")
    assert chart["spec"]["targetNamespace"] == "cert-manager"
    values = yaml.safe_load(chart["spec"]["valuesContent"])
    assert values["crds"] == {"enabled": True, "keep": True}
    assert values["resources"]["requests"]["memory"] == "48Mi"

    traefik = _get(lab, HELM, "HelmChartConfig", "traefik", "kube-system")
    # No k3s HelmChart traefik here: the chart of libresh's default k3s (38.0.2) is assumed.
    assert json.loads(result.stdout)["packaged_charts"] == {}
    web = yaml.safe_load(traefik["spec"]["valuesContent"])["ports"]["web"]
    assert web["redirections"]["entryPoint"] == {
        "to": "websecure",
        "scheme": "https",
        "permanent": True,
    }

    for name, server in (
        ("letsencrypt-staging", "acme-staging-v02"),
        ("letsencrypt-production", "acme-v02.api"),
    ):
        issuer = _get(lab, "cert-manager.io/v1", "ClusterIssuer", name)
        acme = issuer["spec"]["acme"]
        assert acme["email"] == "ops@coop.example" and server in acme["server"]
        assert acme["solvers"] == [{"http01": {"ingress": {"ingressClassName": "traefik"}}}]
    settings = _get(lab, "v1", "ConfigMap", "libresh-infra", "libresh-system")
    assert settings["data"] == {"profile": "single", "email": "ops@coop.example"}


def test_rerun_changes_nothing(lab: Lab, k3s_kinds: None) -> None:
    before = _get(lab, HELM, "HelmChart", "cert-manager", "kube-system")["metadata"]
    result = libresh(lab, "infra", "install")  # the email is the one kept in the cluster
    assert result.returncode == 0, result.stderr
    assert "Nothing to do" in result.stderr
    after = _get(lab, HELM, "HelmChart", "cert-manager", "kube-system")["metadata"]
    assert after["resourceVersion"] == before["resourceVersion"]


def test_a_new_email_updates_both_issuers(lab: Lab, k3s_kinds: None) -> None:
    planned = libresh(
        lab, "-o", "json", "infra", "install", "--email", "new@coop.example", "--dry-run"
    )
    assert planned.returncode == 0, planned.stderr
    actions = {(c["kind"], c["name"]): c["action"] for c in json.loads(planned.stdout)["changes"]}
    updated = {ref for ref, action in actions.items() if action != "unchanged"}
    assert updated == {
        ("ClusterIssuer", "letsencrypt-staging"),
        ("ClusterIssuer", "letsencrypt-production"),
    }
    issuer = _get(lab, "cert-manager.io/v1", "ClusterIssuer", "letsencrypt-staging")
    assert issuer["spec"]["acme"]["email"] == "ops@coop.example"  # the dry run changed nothing

    result = libresh(lab, "infra", "install", "--email", "new@coop.example")
    assert result.returncode == 0, result.stderr
    for name in ("letsencrypt-staging", "letsencrypt-production"):
        issuer = _get(lab, "cert-manager.io/v1", "ClusterIssuer", name)
        assert issuer["spec"]["acme"]["email"] == "new@coop.example"


def test_upgrade_moves_to_the_pinned_versions(lab: Lab, k3s_kinds: None) -> None:
    """As an older libresh release would have left it: cert-manager one version behind."""
    with lab.kube() as kube:
        kube.request(
            "PATCH",
            kube.path_for(HELM, "HelmChart", "cert-manager", "kube-system"),
            body={"spec": {"version": "v1.18.2"}},
            content_type="application/merge-patch+json",
        )
    planned = libresh(lab, "-o", "json", "infra", "upgrade", "--dry-run")
    assert planned.returncode == 0, planned.stderr
    changes = [c for c in json.loads(planned.stdout)["changes"] if c["action"] != "unchanged"]
    assert changes == [{"kind": "HelmChart", "name": "cert-manager", "action": "update"}]
    unasked = libresh(lab, "infra", "upgrade")
    assert unasked.returncode == 2 and "--yes" in unasked.stderr
    assert (
        _get(lab, HELM, "HelmChart", "cert-manager", "kube-system")["spec"]["version"] == "v1.18.2"
    )

    done = libresh(lab, "infra", "upgrade", "--yes")
    assert done.returncode == 0, done.stderr
    assert (
        _get(lab, HELM, "HelmChart", "cert-manager", "kube-system")["spec"]["version"] == "v1.19.4"
    )
    again = libresh(lab, "infra", "upgrade")
    assert again.returncode == 0 and "Nothing to do" in again.stderr


def _k3s_traefik_chart(lab: Lab, tarball: str | None) -> None:
    """k3s' own HelmChart traefik, as k3s writes it from manifests/traefik.yaml (or none)."""
    with lab.kube() as kube:
        if tarball is None:
            kube.delete(HELM, "HelmChart", "traefik", "kube-system")
            return
        kube.apply(
            {
                "apiVersion": HELM,
                "kind": "HelmChart",
                "metadata": {"name": "traefik", "namespace": "kube-system"},
                "spec": {"chart": f"https://%{{KUBERNETES_API}}%/static/charts/{tarball}"},
            }
        )


def _redirect(lab: Lab) -> dict[str, Any]:
    traefik = _get(lab, HELM, "HelmChartConfig", "traefik", "kube-system")
    web: dict[str, Any] = yaml.safe_load(traefik["spec"]["valuesContent"])["ports"]["web"]
    return web


def test_the_redirect_follows_the_chart_k3s_runs(lab: Lab, k3s_kinds: None) -> None:
    """After k3s moves to a release packaging Traefik chart 39, the redirect key moves with it
    (traefik/traefik-helm-chart 39: ports.<name>.http.redirections)."""
    assert "redirections" in _redirect(lab) and "http" not in _redirect(lab)
    _k3s_traefik_chart(lab, "traefik-39.0.501+up39.0.5.tgz")
    try:
        status = json.loads(libresh(lab, "-o", "json", "infra", "status").stdout)
        traefik = next(c for c in status["components"] if c["name"] == "traefik")
        assert "not the ones for the chart k3s runs (39.0.5)" in traefik["detail"]
        planned = libresh(lab, "-o", "json", "infra", "upgrade", "--dry-run")
        assert planned.returncode == 0, planned.stderr
        report = json.loads(planned.stdout)
        assert report["packaged_charts"] == {"traefik": "39.0.5"}
        changed = [c for c in report["changes"] if c["action"] != "unchanged"]
        assert changed == [{"kind": "HelmChartConfig", "name": "traefik", "action": "update"}]
        done = libresh(lab, "infra", "upgrade", "--yes")
        assert done.returncode == 0, done.stderr
        web = _redirect(lab)
        assert "redirections" not in web
        assert web["http"]["redirections"]["entryPoint"]["to"] == "websecure"
        status = json.loads(libresh(lab, "-o", "json", "infra", "status").stdout)
        traefik = next(c for c in status["components"] if c["name"] == "traefik")
        assert "not the ones for the chart" not in traefik["detail"]
    finally:
        _k3s_traefik_chart(lab, "traefik-38.0.201+up38.0.2.tgz")
        back = libresh(lab, "infra", "upgrade", "--yes")
    assert back.returncode == 0, back.stderr
    assert _redirect(lab)["redirections"]["entryPoint"]["to"] == "websecure"
    _k3s_traefik_chart(lab, None)
    old = libresh(lab, "infra", "upgrade", "--dry-run")
    assert old.returncode == 0 and "Nothing to do" in old.stderr, old.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--email", "not-an-address"], "is not an email address"),
        (["--email", "ops@coop.example", "--profile", "huge"], "Unknown profile 'huge'"),
        (["--hcloud-network", "coop"], "--hcloud-network is kept with the token"),
        (["--hcloud-location", "Falkenstein"], "is not a Hetzner location name"),
    ],
)
def test_bad_input(lab: Lab, k3s_kinds: None, args: list[str], message: str) -> None:
    result = libresh(lab, "infra", "install", *args)
    assert result.returncode == 2 and message in result.stderr


def _chart_workload(
    name: str, namespace: str, memory: str, *, failing: bool = False
) -> dict[str, Any]:
    """What a chart would run (the lab has no helm-controller to run the chart)."""
    labels = {"app": name}
    pod_labels = {**labels, **({"lab.libresh.dev/fail": "true"} if failing else {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/version": "v1.19.4"},
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "containers": [
                        {
                            "name": name,
                            "image": "example/x:1",
                            "resources": {"requests": {"memory": memory}},
                        }
                    ]
                },
            },
        },
    }


def test_status_reports_health_versions_and_memory(lab: Lab, k3s_kinds: None) -> None:
    with lab.kube() as kube:
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "cert-manager"}})
        for name, memory in (
            ("cert-manager", "48Mi"),
            ("cert-manager-webhook", "24Mi"),
            ("cert-manager-cainjector", "48Mi"),
        ):
            kube.apply(_chart_workload(name, "cert-manager", memory))
        kube.apply(_chart_workload("traefik", "kube-system", "64Mi", failing=True))
        # k3s' local-path, as k3s deploys it; its StorageClass is left non-default here (the
        # lab's default one serves the other tests), which status must point out.
        kube.apply(_chart_workload("local-path-provisioner", "kube-system", "0"))
        kube.apply(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": "local-path"},
                "provisioner": "rancher.io/local-path",
            }
        )
        issuer = kube.get("cert-manager.io/v1", "ClusterIssuer", "letsencrypt-production")
        assert issuer is not None
        status = {
            "conditions": [
                {"type": "Ready", "status": "True", "message": "ACME account registered"}
            ]
        }
        kube.request(
            "PATCH",
            kube.path_for("cert-manager.io/v1", "ClusterIssuer", "letsencrypt-production")
            + "/status",
            body={"status": status},
            content_type="application/merge-patch+json",
        )
    deadline = time.monotonic() + 60
    while True:
        result = libresh(lab, "-o", "json", "infra", "status")
        data = json.loads(result.stdout)
        components = {c["name"]: c for c in data["components"]}
        if components["cert-manager"]["health"] == "healthy" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert result.returncode == 1  # not everything is healthy
    assert components["cert-manager"]["health"] == "healthy"
    assert components["cert-manager"]["pinned"] == "v1.19.4"
    assert components["cert-manager"]["running"] == "v1.19.4"
    assert components["traefik"]["health"] == "degraded"
    assert "traefik" in components["traefik"]["detail"]
    # cert-manager 48 + 24 + 48, Traefik 64, system-upgrade-controller 32: under 512 MiB.
    assert data["memory_requests"] == "216Mi"
    assert components["system-upgrade-controller"]["pinned"] == "v0.14.2"
    assert components["local-path"]["pinned"] == "shipped with k3s"
    assert components["local-path"]["health"] == "degraded"
    assert "StorageClass local-path is not the default one" in components["local-path"]["detail"]
    issuers = {i["name"]: i["ready"] for i in data["issuers"]}
    assert issuers == {"letsencrypt-staging": False, "letsencrypt-production": True}
    table = libresh(lab, "infra", "status")
    assert "degraded" in table.stdout and "216Mi" in table.stdout


def _traefik(lab: Lab) -> dict[str, Any]:
    data = json.loads(libresh(lab, "-o", "json", "infra", "status").stdout)
    found: dict[str, Any] = next(c for c in data["components"] if c["name"] == "traefik")
    return {**found, "healthy": data["healthy"]}


def test_status_needs_an_address_on_traefiks_load_balancer(lab: Lab, k3s_kinds: None) -> None:
    """Traefik's Service (type LoadBalancer) gets its address from k3s' servicelb, or from the
    hcloud CCM's load balancer: until then nothing answers on 80/443, and status says so."""
    with lab.kube() as kube:
        kube.apply(_chart_workload("traefik", "kube-system", "64Mi"))  # now a running Traefik
    deadline = time.monotonic() + 60
    while "not ready" in (traefik := _traefik(lab))["detail"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert traefik["health"] == "degraded" and "no Service traefik" in traefik["detail"]
    with lab.kube() as kube:
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "traefik", "namespace": "kube-system"},
                "spec": {
                    "type": "LoadBalancer",
                    "selector": {"app": "traefik"},
                    "ports": [
                        {"name": "web", "port": 80, "targetPort": 8000},
                        {"name": "websecure", "port": 443, "targetPort": 8443},
                    ],
                },
            }
        )
    waiting = _traefik(lab)
    assert waiting["health"] == "degraded" and waiting["healthy"] is False
    assert "Service traefik has no load balancer address yet" in waiting["detail"]
    result = libresh(lab, "infra", "status")
    assert result.returncode == 1 and "degraded" in result.stdout
    with lab.kube() as kube:  # what servicelb or the CCM writes once the balancer is there
        kube.request(
            "PATCH",
            kube.path_for("v1", "Service", "traefik", "kube-system") + "/status",
            body={"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.80"}]}}},
            content_type="application/merge-patch+json",
        )
    served = _traefik(lab)
    assert served["health"] == "healthy", served["detail"]
    assert "address 203.0.113.80" in served["detail"]


def test_ha_profile_needs_the_hcloud_token_and_keeps_it_secret(
    lab: Lab, k3s_kinds: None, tmp_path: Path
) -> None:
    refused = libresh(lab, "infra", "install", "--profile", "ha")
    assert refused.returncode == 6 and "--hcloud-location" in refused.stderr
    refused = libresh(lab, "infra", "install", "--profile", "ha", "--hcloud-location", "fsn1")
    assert refused.returncode == 6 and "--hcloud-token-file" in refused.stderr
    assert _get(lab, HELM, "HelmChart", "hcloud-csi", "kube-system") is None

    token = "hcloud-token-" + "x" * 51
    token_file = tmp_path / "hcloud-token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    result = libresh(
        lab, "-o", "json", "infra", "install", "--profile", "ha",
        "--hcloud-token-file", str(token_file), "--hcloud-network", "coop-net",
        "--hcloud-location", "fsn1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert token not in result.stdout + result.stderr
    secret = _get(lab, "v1", "Secret", "hcloud", "kube-system")
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {"token": token, "network": "coop-net"}
    csi = _get(lab, HELM, "HelmChart", "hcloud-csi", "kube-system")["spec"]
    assert (csi["repo"], csi["version"]) == ("https://charts.hetzner.cloud", "2.18.3")
    assert "bootstrap" not in csi
    ccm = _get(lab, HELM, "HelmChart", "hcloud-cloud-controller-manager", "kube-system")["spec"]
    assert ccm["bootstrap"] is True  # its install Job tolerates the uninitialised nodes
    networking = yaml.safe_load(ccm["valuesContent"])["networking"]
    assert networking == {"enabled": True, "clusterCIDR": "10.42.0.0/16"}
    traefik = _get(lab, HELM, "HelmChartConfig", "traefik", "kube-system")["spec"]
    assert yaml.safe_load(traefik["valuesContent"])["service"]["annotations"] == {
        "load-balancer.hetzner.cloud/location": "fsn1",
        "load-balancer.hetzner.cloud/use-private-ip": "true",
    }
    settings = _get(lab, "v1", "ConfigMap", "libresh-infra", "libresh-system")["data"]
    assert settings == {"profile": "ha", "email": "new@coop.example",
                        "hcloud-location": "fsn1", "hcloud-network": "coop-net"}  # fmt: skip
    again = libresh(lab, "infra", "install")  # the kept token and settings: nothing to do
    assert again.returncode == 0 and "Nothing to do" in again.stderr, again.stderr
    status = json.loads(libresh(lab, "-o", "json", "infra", "status").stdout)
    assert status["profile"] == "ha"
    assert "local-path" not in [c["name"] for c in status["components"]]
    traefik_status = next(c for c in status["components"] if c["name"] == "traefik")
    assert "not the ones" not in traefik_status["detail"]


def test_ha_profile_without_a_private_network(lab: Lab, k3s_kinds: None, tmp_path: Path) -> None:
    """private_network: none: the CCM's networking off (it would wait for a `network` key that
    the Secret has not), and Traefik's load balancer reaches the nodes on public addresses."""
    token_file = tmp_path / "hcloud-token"
    token_file.write_text("y" * 64 + "\n")
    token_file.chmod(0o600)
    with lab.kube() as kube:  # a cluster made without a network: no setting kept for one
        kube.request(
            "PATCH",
            kube.path_for("v1", "ConfigMap", "libresh-infra", "libresh-system"),
            body={"data": {"hcloud-network": None}},
            content_type="application/merge-patch+json",
        )
    result = libresh(
        lab, "infra", "install", "--hcloud-token-file", str(token_file), "--hcloud-location", "hel1"
    )
    assert result.returncode == 0, result.stderr
    secret = _get(lab, "v1", "Secret", "hcloud", "kube-system")
    assert set(secret["data"]) == {"token"}
    ccm = _get(lab, HELM, "HelmChart", "hcloud-cloud-controller-manager", "kube-system")["spec"]
    assert yaml.safe_load(ccm["valuesContent"])["networking"] == {"enabled": False}
    traefik = _get(lab, HELM, "HelmChartConfig", "traefik", "kube-system")["spec"]
    assert yaml.safe_load(traefik["valuesContent"])["service"]["annotations"] == {
        "load-balancer.hetzner.cloud/location": "hel1"
    }


# -- cluster upgrade: system-upgrade-controller Plans -----------------------------------------


@pytest.fixture(scope="module")
def controller_crd(lab: Lab, k3s_kinds: None) -> None:
    """What system-upgrade-controller does when it starts (no pod runs in the lab): register
    its Plan CRD (tests/fixtures/infra/system-upgrade-controller-v0.14.2-plan-crd.yaml)."""
    crd = yaml.safe_load(PLAN_CRD.read_text())
    with lab.kube() as kube:
        kube.apply(crd)
        deadline = time.monotonic() + 30
        while not _established(kube, crd["metadata"]["name"]):
            assert time.monotonic() < deadline, "the controller's Plan CRD not established"
            time.sleep(0.2)


def test_libresh_leaves_the_controllers_plan_crd_alone(lab: Lab, controller_crd: None) -> None:
    before = _get(lab, *CRD_API, "plans.upgrade.cattle.io")
    result = libresh(lab, "infra", "install")
    assert result.returncode == 0 and "Nothing to do" in result.stderr, result.stderr
    after = _get(lab, *CRD_API, "plans.upgrade.cattle.io")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    schema = after["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert "drain" in schema["properties"]["spec"]["properties"]  # the controller's own schema


@pytest.fixture
def k3s_nodes(lab: Lab, k3s_kinds: None, controller_crd: None) -> Iterator[None]:
    """Two nodes as k3s registers them (a server, an agent) at v1.34.4+k3s1. Not simulated by
    kwok (no annotation), so their status stays what the test writes."""
    names = {"k3s-server-1": {"node-role.kubernetes.io/control-plane": "true"}, "k3s-agent-1": {}}
    with lab.kube() as kube:
        for name, labels in names.items():
            kube.apply(
                {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}
            )
            kube.request(
                "PATCH",
                kube.path_for("v1", "Node", name) + "/status",
                body={"status": {"nodeInfo": {"kubeletVersion": "v1.34.4+k3s1"}}},
                content_type="application/merge-patch+json",
            )
    yield
    with lab.kube() as kube:
        for name in names:
            kube.delete("v1", "Node", name)


def test_cluster_upgrade_refuses_a_downgrade_and_a_skipped_minor(lab: Lab, k3s_nodes: None) -> None:
    for version, words in (("v1.33.9+k3s1", "going back"), ("v1.36.0+k3s1", "skip a minor")):
        result = libresh(lab, "cluster", "upgrade", "--k3s-version", version, "--yes")
        assert result.returncode == 5, result.stderr
        assert words in result.stderr and "node k3s-" in result.stderr
    assert _get(lab, "upgrade.cattle.io/v1", "Plan", "k3s-server", "system-upgrade") is None


def test_cluster_upgrade_plans_servers_then_agents(lab: Lab, k3s_nodes: None) -> None:
    version = "v1.35.1+k3s1"
    planned = libresh(
        lab, "-o", "json", "cluster", "upgrade", "--k3s-version", version, "--dry-run"
    )
    assert planned.returncode == 0, planned.stderr
    assert {n["node"]: n["from"] for n in json.loads(planned.stdout)["nodes"]} == {
        "k3s-server-1": "v1.34.4+k3s1",
        "k3s-agent-1": "v1.34.4+k3s1",
    }
    unasked = libresh(lab, "cluster", "upgrade", "--k3s-version", version)
    assert unasked.returncode == 2 and "--yes" in unasked.stderr
    assert _get(lab, "upgrade.cattle.io/v1", "Plan", "k3s-server", "system-upgrade") is None

    done = libresh(lab, "cluster", "upgrade", "--k3s-version", version, "--yes")
    assert done.returncode == 0, done.stderr
    server = _get(lab, "upgrade.cattle.io/v1", "Plan", "k3s-server", "system-upgrade")["spec"]
    agent = _get(lab, "upgrade.cattle.io/v1", "Plan", "k3s-agent", "system-upgrade")["spec"]
    assert server["version"] == agent["version"] == version
    assert server["concurrency"] == agent["concurrency"] == 1
    assert server["cordon"] is True and "drain" in agent
    assert agent["prepare"]["args"] == ["prepare", "k3s-server"]  # agents wait for servers
    assert server["upgrade"]["image"] == "rancher/k3s-upgrade"
    again = libresh(lab, "cluster", "upgrade", "--k3s-version", version, "--yes")
    assert again.returncode == 0 and "Nothing to do" in again.stderr
