"""`libresh infra` on the lab's real API server. The lab is not k3s: a fixture registers the
helm-controller's and cert-manager's kinds from tests/fixtures/infra/standin-crds.yaml (a
stand-in, named as such), and creates the Deployments a chart would run where `infra status`
needs them. What is checked is what libresh applies and reads."""

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

LIBRESH = str(Path(sys.executable).parent / "libresh")
CRDS = Path(__file__).parents[1] / "fixtures" / "infra" / "standin-crds.yaml"
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
    documents = list(yaml.safe_load_all(CRDS.read_text()))
    with lab.kube() as kube:
        for crd in documents:
            kube.apply(crd)
        deadline = time.monotonic() + 30
        while not all(_established(kube, d["metadata"]["name"]) for d in documents):
            assert time.monotonic() < deadline, "stand-in CRDs not established"
            time.sleep(0.2)
    yield
    with lab.kube() as kube:
        for crd in documents:
            kube.delete(*CRD_API, crd["metadata"]["name"])
        kube.delete("v1", "Namespace", "cert-manager")
        kube.delete("v1", "Namespace", "system-upgrade")
        kube.delete(*CRD_API, "plans.upgrade.cattle.io")
        kube.delete("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "system-upgrade")
        kube.delete("v1", "ConfigMap", "libresh-infra", "libresh-system")
        kube.delete("apps/v1", "Deployment", "traefik", "kube-system")
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
            ("Deployment", "system-upgrade-controller"),
            ("CustomResourceDefinition", "plans.upgrade.cattle.io")} <= set(changes)  # fmt: skip

    chart = _get(lab, HELM, "HelmChart", "cert-manager", "kube-system")
    assert chart["spec"]["repo"] == "https://charts.jetstack.io"
    assert (chart["spec"]["chart"], chart["spec"]["version"]) == ("cert-manager", "v1.19.4")
    assert chart["spec"]["targetNamespace"] == "cert-manager"
    values = yaml.safe_load(chart["spec"]["valuesContent"])
    assert values["crds"] == {"enabled": True, "keep": True}
    assert values["resources"]["requests"]["memory"] == "48Mi"

    traefik = _get(lab, HELM, "HelmChartConfig", "traefik", "kube-system")
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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--email", "not-an-address"], "is not an email address"),
        (["--email", "ops@coop.example", "--profile", "huge"], "Unknown profile 'huge'"),
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


def test_ha_profile_needs_the_hcloud_token_and_keeps_it_secret(
    lab: Lab, k3s_kinds: None, tmp_path: Path
) -> None:
    refused = libresh(lab, "infra", "install", "--profile", "ha")
    assert refused.returncode == 6 and "--hcloud-token-file" in refused.stderr
    assert _get(lab, HELM, "HelmChart", "hcloud-csi", "kube-system") is None

    token = "hcloud-token-" + "x" * 51
    token_file = tmp_path / "hcloud-token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    result = libresh(
        lab, "-o", "json", "infra", "install", "--profile", "ha",
        "--hcloud-token-file", str(token_file), "--hcloud-network", "coop-net",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert token not in result.stdout + result.stderr
    secret = _get(lab, "v1", "Secret", "hcloud", "kube-system")
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {"token": token, "network": "coop-net"}
    csi = _get(lab, HELM, "HelmChart", "hcloud-csi", "kube-system")["spec"]
    assert (csi["repo"], csi["version"]) == ("https://charts.hetzner.cloud", "2.18.3")
    ccm = _get(lab, HELM, "HelmChart", "hcloud-cloud-controller-manager", "kube-system")
    assert yaml.safe_load(ccm["spec"]["valuesContent"])["networking"]["enabled"] is True
    again = libresh(lab, "infra", "install")  # the kept token and profile: nothing to do
    assert again.returncode == 0 and "Nothing to do" in again.stderr, again.stderr
    status = json.loads(libresh(lab, "-o", "json", "infra", "status").stdout)
    assert status["profile"] == "ha"
    assert "local-path" not in [c["name"] for c in status["components"]]


# -- cluster upgrade: system-upgrade-controller Plans -----------------------------------------


@pytest.fixture
def k3s_nodes(lab: Lab, k3s_kinds: None) -> Iterator[None]:
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
