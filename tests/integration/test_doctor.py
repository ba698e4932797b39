"""`libresh doctor` on the lab's real API server, each problem provoked as it happens: a
domain pointing elsewhere (a DNS server on 127.0.0.1 run by the test answers for it), a
certificate missing or expired (a stand-in Certificate kind: the lab has no cert-manager), an
instance unhealthy, backups older than their schedule, an unmaintained version, a node whose
pods request more memory than it has. Run as cron runs it: the `libresh` command, -o json."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from libresh_cli.apps.record import HistoryEntry, read_record, save_record
from libresh_cli.kube.client import KubeClient
from tests.integration.conftest import Lab
from tests.integration.dnsserver import dns_server
from tests.upstream import cert_manager_crd

LIBRESH = str(Path(sys.executable).parent / "libresh")
FIXTURES = Path(__file__).parents[1] / "fixtures"
CRD_API = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
CERT_API = "cert-manager.io/v1"
INGRESS = """
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: demo
  annotations:
    cert-manager.io/cluster-issuer: {{ cluster_issuer | tojson }}
spec:
  ingressClassName: traefik
  tls:
    - hosts: [{{ instance.domain | tojson }}]
      secretName: demo-tls
  rules:
    - host: {{ instance.domain | tojson }}
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: demo, port: {number: 80}}}}
"""


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lifecycle tests' demo app, with an Ingress (TLS by cert-manager) and upstream
    maintenance dates: 1.0.0 unmaintained since 2020, 1.1.0 maintained until 2099."""
    root = tmp_path_factory.mktemp("catalog")
    shutil.copytree(FIXTURES / "catalog" / "demo", root / "demo")
    app = yaml.safe_load((root / "demo" / "app.yaml").read_text())
    app["versions"][0]["maintained_until"] = "2020-01-01"
    app["versions"][1]["maintained_until"] = "2099-12-31"
    (root / "demo" / "app.yaml").write_text(yaml.safe_dump(app, sort_keys=False))
    template = root / "demo" / "templates" / "demo.yaml"
    template.write_text(template.read_text() + INGRESS)
    return root


def libresh(lab: Lab, catalog: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LIBRESH, "--kubeconfig", str(lab.kubeconfig), "--catalog", str(catalog), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env={**lab.cli_env(), "COLUMNS": "250"},
    )


@pytest.fixture
def name(kube: KubeClient) -> Iterator[str]:
    instance = f"dr{uuid.uuid4().hex[:8]}"
    yield instance
    kube.delete("v1", "Namespace", instance)


def install(lab: Lab, catalog: Path, name: str, version: str = "1.1.0") -> str:
    domain = f"{name}.coop.example"
    result = libresh(
        lab, catalog, "install", "demo", "--name", name, "--domain", domain,
        "--version", version, "--yes",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return domain


def node_addresses(kube: KubeClient) -> list[str]:
    return sorted(
        {
            a["address"]
            for n in kube.list("v1", "Node")
            for a in n["status"].get("addresses") or []
            if a["type"] == "InternalIP"
        }
    )


def doctor(lab: Lab, catalog: Path, *args: str) -> tuple[int, dict[str, Any]]:
    # The lab's Kubernetes minor may be out of upstream maintenance on the day the tests run:
    # that check is tested on its own (tests/unit/test_doctor.py); here it never decides.
    result = libresh(lab, catalog, "-o", "json", "doctor", "--ignore", "kubernetes-version", *args)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return result.returncode, json.loads(result.stdout)


def found(report: dict[str, Any], check: str, subject: str) -> dict[str, Any]:
    matches = [c for c in report["checks"] if c["check"] == check and c["subject"] == subject]
    assert len(matches) == 1, (check, subject, report["checks"])
    match: dict[str, Any] = matches[0]
    return match


@pytest.fixture(scope="module")
def certificate_kind(lab: Lab) -> Iterator[None]:
    crd = cert_manager_crd("certificates")  # upstream's own, from its Go module
    with lab.kube() as kube:
        kube.apply(crd)
        deadline = time.monotonic() + 30
        while not _established(kube, crd["metadata"]["name"]):
            assert time.monotonic() < deadline, "cert-manager's Certificate CRD not established"
            time.sleep(0.2)
    yield
    with lab.kube() as kube:
        kube.delete(*CRD_API, crd["metadata"]["name"])


def _established(kube: KubeClient, name: str) -> bool:
    conditions = ((kube.get(*CRD_API, name) or {}).get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def issue_certificate(lab: Lab, namespace: str, domain: str, not_after: datetime) -> None:
    """What cert-manager's ingress-shim and issuer would leave: a Certificate for the
    Ingress's TLS Secret, and its status once issued (notAfter, Ready)."""
    with lab.kube() as kube:  # a new client: it discovers the kind registered meanwhile
        kube.apply(
            {
                "apiVersion": CERT_API,
                "kind": "Certificate",
                "metadata": {"name": "demo-tls", "namespace": namespace},
                "spec": {
                    "secretName": "demo-tls",
                    "dnsNames": [domain],
                    "issuerRef": {"name": "letsencrypt-production", "kind": "ClusterIssuer"},
                },
            }
        )
        expired = not_after < datetime.now(UTC)
        kube.request(
            "PATCH",
            kube.path_for(CERT_API, "Certificate", "demo-tls", namespace) + "/status",
            body={
                "status": {
                    "notAfter": not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "False" if expired else "True",
                            "reason": "Expired" if expired else "Ready",
                            "message": "Certificate expired" if expired else "up to date",
                        }
                    ],
                }
            },
            content_type="application/merge-patch+json",
        )


def schedule_backups(kube: KubeClient, namespace: str, cron: str) -> None:
    """A CronJob where `libresh backup schedule` puts one (libresh-backup): the lab has no
    backup storage, and the doctor reads only its schedule and status."""
    kube.apply(
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "libresh-backup", "namespace": namespace},
            "spec": {
                "schedule": cron,
                "timeZone": "Etc/UTC",
                "suspend": True,  # never runs here: what it would do is not the test
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [{"name": "runner", "image": "example.org/x"}],
                            }
                        }
                    }
                },
            },
        }
    )


def backdate(kube: KubeClient, name: str, installed: timedelta, backed_up: timedelta) -> None:
    """The record as an instance installed `installed` ago and last backed up `backed_up`
    ago would have it."""
    record = read_record(kube, name)
    assert record is not None
    now = datetime.now(UTC)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    for entry in record.history:
        entry.at = (now - installed).strftime(stamp)
    record.add_history(
        HistoryEntry("backup", record.version, record.version, "ok", "b-1 (test)",
                     at=(now - backed_up).strftime(stamp))
    )  # fmt: skip
    save_record(kube, record)


def test_cert_manager_missing_is_a_problem_with_its_fix(
    lab: Lab, kube: KubeClient, catalog: Path, name: str
) -> None:
    assert kube.get(*CRD_API, "certificates.cert-manager.io") is None
    install(lab, catalog, name)
    code, report = doctor(lab, catalog, name)
    assert code == 1 and not report["healthy"]
    check = found(report, "cert-manager", "cluster")
    assert check["status"] == "problem"
    assert check["detail"].startswith("cert-manager is not installed")
    assert check["fix"].startswith("libresh infra install")
    certificate = found(report, "certificate", name)
    assert certificate["status"] == "problem"
    assert certificate["detail"] == "no certificate: cert-manager is not installed"


def test_all_well_exits_0_and_says_what_it_could_not_check(
    lab: Lab, kube: KubeClient, catalog: Path, name: str, certificate_kind: None
) -> None:
    domain = install(lab, catalog, name)
    issue_certificate(lab, name, domain, datetime.now(UTC) + timedelta(days=60))
    schedule_backups(kube, name, "30 3 * * *")
    backdate(kube, name, installed=timedelta(days=10), backed_up=timedelta(hours=2))
    addresses = node_addresses(kube)
    with dns_server({domain: addresses}) as server:
        host, port = server.server_address
        result = libresh(lab, catalog, "doctor", name, "--nameserver", f"{host}:{port}",
                         "--ignore", "kubernetes-version")  # fmt: skip
        code, report = doctor(lab, catalog, name, "--nameserver", f"{host}:{port}")
    assert domain in server.asked
    assert code == 0, json.dumps(report, indent=1)
    assert result.returncode == 0, result.stdout + result.stderr
    statuses = {(c["subject"], c["check"]): c["status"] for c in report["checks"]}
    for check in ("health", "upstream", "dns", "certificate", "backup"):
        assert statuses[(name, check)] == "ok", check
    for check in ("cert-manager", "scheduling"):
        assert statuses[("cluster", check)] == "ok", check
    assert {s for (subject, c), s in statuses.items() if c == "memory"} == {"ok"}
    # What the lab cannot show is said, never passed.
    assert statuses[("cluster", "ports")] == "not checked"
    assert "libresh lab" in found(report, "ports", "cluster")["detail"]
    assert statuses[("cluster", "infrastructure")] == "not checked"
    assert {s for (subject, c), s in statuses.items() if c == "node"} == {"not checked"}
    assert found(report, "dns", name)["detail"] == (
        f"{domain} resolves to {', '.join(addresses)}, the cluster's address"
    )
    assert "demo-tls: valid until" in found(report, "certificate", name)["detail"]
    assert "(59 days left)" in found(report, "certificate", name)["detail"]
    # The table people read: one row per check, the summary on stderr.
    assert "WHAT TO DO" in result.stdout and f"{name}" in result.stdout
    assert "0 problem(s)" in result.stderr


def test_a_domain_resolving_elsewhere_or_nowhere(
    lab: Lab, kube: KubeClient, catalog: Path, name: str
) -> None:
    domain = install(lab, catalog, name)
    with dns_server({domain: ["203.0.113.7"]}) as server:
        address = "{}:{}".format(*server.server_address)
        # The lab's nodes have private addresses: a public record may be a router's.
        code, report = doctor(lab, catalog, name, "--nameserver", address)
        check = found(report, "dns", name)
        assert check["status"] == "warn"
        assert "this is right only if it is your router's address" in check["detail"]
        assert "libresh doctor --public-address 203.0.113.7" in check["fix"]
        # Given the cluster's public address, a record to another one is a problem.
        code, report = doctor(
            lab, catalog, name, "--nameserver", address, "--public-address", "198.51.100.10"
        )
        assert code == 1
        check = found(report, "dns", name)
        assert check["status"] == "problem"
        assert check["detail"] == (
            f"{domain} resolves to 203.0.113.7 (asked of 127.0.0.1), not to the cluster "
            "(198.51.100.10): visitors and Let's Encrypt reach another machine"
        )
        assert check["fix"] == f"At your DNS provider, point {domain} (A record) to 198.51.100.10"

        server.table.clear()
        code, report = doctor(lab, catalog, name, "--nameserver", address)
        assert code == 1
        assert found(report, "dns", name)["detail"] == (
            f"{domain} does not exist (NXDOMAIN), asked of 127.0.0.1"
        )
    # No server answers there: not checked, and said why.
    code, report = doctor(lab, catalog, name, "--nameserver", address)
    check = found(report, "dns", name)
    assert check["status"] == "not checked" and "did not answer" in check["detail"]


def test_a_certificate_expired_or_missing(
    lab: Lab, kube: KubeClient, catalog: Path, name: str, certificate_kind: None
) -> None:
    domain = install(lab, catalog, name)
    issue_certificate(lab, name, domain, datetime.now(UTC) - timedelta(days=2))
    code, report = doctor(lab, catalog, name)
    assert code == 1
    check = found(report, "certificate", name)
    assert check["status"] == "problem"
    expired_on = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%d")
    assert check["detail"] == f"demo-tls: expired on {expired_on}"
    assert f"kubectl -n {name} describe certificate demo-tls" in check["fix"]

    with lab.kube() as fresh:
        fresh.delete(CERT_API, "Certificate", "demo-tls", name)
    code, report = doctor(lab, catalog, name)
    assert code == 1
    check = found(report, "certificate", name)
    assert check["detail"].startswith("no Certificate for the Ingress's TLS Secret demo-tls")
    assert "cert-manager.io/cluster-issuer" in check["fix"]


def test_an_unhealthy_instance(lab: Lab, kube: KubeClient, catalog: Path, name: str) -> None:
    install(lab, catalog, name)
    kube.delete("apps/v1", "Deployment", "demo", name)
    code, report = doctor(lab, catalog, name)
    assert code == 1
    check = found(report, "health", name)
    assert (check["status"], check["detail"]) == ("problem", "Deployment/demo is missing")
    assert f"libresh install demo --name {name}" in check["fix"]


def test_backups_older_than_their_schedule(
    lab: Lab, kube: KubeClient, catalog: Path, name: str
) -> None:
    install(lab, catalog, name)
    schedule_backups(kube, name, "30 3 * * *")
    backdate(kube, name, installed=timedelta(days=10), backed_up=timedelta(days=3))
    code, report = doctor(lab, catalog, name)
    assert code == 1
    check = found(report, "backup", name)
    assert check["status"] == "problem"
    assert check["detail"].startswith("the newest complete backup is 3 days ago")
    assert "the schedule '30 3 * * *' (UTC) should have made one at" in check["detail"]
    assert check["fix"].startswith(f"libresh backup now {name}")

    kube.delete("batch/v1", "CronJob", "libresh-backup", name)
    code, report = doctor(lab, catalog, name)
    check = found(report, "backup", name)
    assert check["status"] == "warn"
    assert check["detail"].startswith("no backup schedule; the newest backup is 3 days ago")
    assert check["fix"] == f'libresh backup schedule {name} --cron "30 3 * * *"'


def test_an_unmaintained_version(lab: Lab, kube: KubeClient, catalog: Path, name: str) -> None:
    install(lab, catalog, name, version="1.0.0")
    code, report = doctor(lab, catalog, name)
    assert code == 1
    check = found(report, "upstream", name)
    assert check["status"] == "problem"
    assert check["detail"] == (
        "upstream stopped maintaining demo 1.0.0 on 2020-01-01: no security fixes"
    )
    assert check["fix"].startswith(f"libresh upgrade {name} (to ")


def test_memory_requests_over_a_nodes_allocatable(
    lab: Lab, kube: KubeClient, catalog: Path, namespace: str
) -> None:
    node = sorted(kube.list("v1", "Node"), key=lambda n: n["metadata"]["name"])[0]
    node_name = node["metadata"]["name"]
    allocatable = node["status"]["allocatable"]["memory"]
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "hungry", "namespace": namespace},
            "spec": {
                "nodeName": node_name,  # placed by hand, as the scheduler would refuse it
                "containers": [
                    {
                        "name": "hungry",
                        "image": "example.org/hungry",
                        "resources": {"requests": {"memory": allocatable}},
                    },
                    {
                        "name": "more",
                        "image": "example.org/more",
                        "resources": {"requests": {"memory": "1Gi"}},
                    },
                ],
            },
        }
    )
    code, report = doctor(lab, catalog)
    assert code == 1
    check = found(report, "memory", f"node {node_name}")
    assert check["status"] == "problem"
    assert check["detail"].endswith(": more than the node has")
    assert "add a node" in check["fix"]
