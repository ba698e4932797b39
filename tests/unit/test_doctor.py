"""The doctor's verdicts, from what the API, the record and a DNS server said: pure."""

from __future__ import annotations

import socket
import struct
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from libresh_cli.apps.inventory import InstanceSummary
from libresh_cli.apps.model import Version
from libresh_cli.apps.record import HistoryEntry, InstanceRecord
from libresh_cli.doctor import cluster_checks, cron, dns, instance_checks, network
from libresh_cli.doctor.checks import Report, Status, ok, problem
from libresh_cli.doctor.service import check_ignored
from libresh_cli.errors import BadInputError

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- cron ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "last"),
    [
        ("30 3 * * *", "2026-12-02 03:30"),
        ("@daily", "2026-12-02 00:00"),
        ("*/15 * * * *", "2026-12-02 12:00"),
        ("0 13 * * *", "2026-12-01 13:00"),
        ("0 4 * * mon-fri", "2026-12-02 04:00"),  # a Wednesday
        ("0 4 * * SAT,sun", "2026-11-29 04:00"),
        ("0 4 * * 7", "2026-11-29 04:00"),  # 7 is Sunday too
        ("0 0 1 * *", "2026-12-01 00:00"),
        ("0 0 15 jan *", "2026-01-15 00:00"),
        ("0 0 29 2 *", "2024-02-29 00:00"),
        # Both day fields given: either matches (cron's rule): the 1st, or a Monday.
        ("0 0 1 * 1", "2026-12-01 00:00"),
        ("0 0 2 * 1", "2026-12-02 00:00"),
        ("0 0 3 * 1", "2026-11-30 00:00"),
        ("0 0 ? * 1", "2026-11-30 00:00"),
        ("0 1-5/2 * * *", "2026-12-02 05:00"),
    ],
)
def test_the_last_run_of_a_schedule(expression: str, last: str) -> None:
    assert cron.last_run(expression, NOW) == at(last)


def test_a_run_before_since_is_none() -> None:
    assert cron.last_run("30 3 * * *", NOW, since=at("2026-12-02 04:00")) is None
    assert cron.last_run("30 3 * * *", NOW, since=at("2026-12-01 04:00")) == at("2026-12-02 03:30")


def test_every_counts_from_since() -> None:
    assert cron.last_run("@every 6h", NOW, since=at("2026-12-01 23:00")) == at("2026-12-02 11:00")
    assert cron.last_run("@every 1h30m", NOW, since=at("2026-12-02 11:00")) is None
    assert cron.last_run("@every 6h", NOW) is None


@pytest.mark.parametrize("bad", ["* * * *", "61 * * * *", "x * * * *", "*/0 * * * *", "@every"])
def test_a_schedule_that_cannot_be_read(bad: str) -> None:
    with pytest.raises(cron.CronError):
        cron.last_run(bad, NOW)


# -- dns -------------------------------------------------------------------------------------


def test_a_query_is_encoded_as_rfc_1035_says() -> None:
    message = dns.query("Cloud.Example.org.", dns.A, 0x1234)
    assert message[:12] == bytes.fromhex("123401000001000000000000")
    assert message[12:] == b"\x05Cloud\x07Example\x03org\x00\x00\x01\x00\x01"


def _answer(ident: int, rcode: int, records: list[tuple[int, bytes]]) -> bytes:
    question = b"\x05cloud\x07example\x03org\x00\x00\x01\x00\x01"
    header = struct.pack("!HHHHHH", ident, 0x8180 | rcode, 1, len(records), 0, 0)
    body = b""
    for rtype, data in records:
        body += struct.pack("!HHHIH", 0xC00C, rtype, 1, 300, len(data)) + data
    return header + question + body


def test_an_answer_gives_its_addresses_through_a_cname() -> None:
    cname = b"\x03web\xc0\x12"  # web.example.org, compressed
    message = _answer(
        7,
        0,
        [
            (dns.CNAME, cname),
            (dns.A, socket.inet_aton("203.0.113.7")),
            (dns.AAAA, socket.inet_pton(socket.AF_INET6, "2001:db8::7")),
        ],
    )
    assert dns.parse_answer(message, 7) == dns.Answer(("203.0.113.7", "2001:db8::7"), "NOERROR")


def test_nxdomain_and_answers_to_other_questions() -> None:
    assert dns.parse_answer(_answer(7, 3, []), 7) == dns.Answer((), "NXDOMAIN")
    with pytest.raises(dns.DnsError, match="another question"):
        dns.parse_answer(_answer(8, 0, []), 7)
    with pytest.raises(dns.DnsError, match="truncated"):
        dns.parse_answer(_answer(7, 0, [(dns.A, b"\1\2\3\4")])[:-6], 7)


def test_nameservers_as_given_and_from_resolv_conf(tmp_path: Path) -> None:
    assert dns.parse_server("9.9.9.9") == ("9.9.9.9", 53)
    assert dns.parse_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert dns.parse_server("[2620:fe::fe]:53") == ("2620:fe::fe", 53)
    assert dns.parse_server("2620:fe::fe") == ("2620:fe::fe", 53)
    with pytest.raises(ValueError):
        dns.parse_server("dns.example.org")
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch lan\nnameserver fe80::1%eth0\nnameserver 10.0.0.53\n")
    assert dns.system_nameserver(conf) == ("fe80::1", 53)
    conf.write_text("search lan\n")
    assert dns.system_nameserver(conf) is None
    assert dns.system_nameserver(tmp_path / "missing") is None


# -- cluster ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "today", "status", "words"),
    [
        ("v1.34.4+k3s1", date(2026, 7, 1), Status.ok, "maintained upstream until 2026-10-27"),
        ("v1.34.4+k3s1", date(2026, 9, 1), Status.warn, "only critical fixes since 2026-08-27"),
        ("v1.34.4+k3s1", date(2026, 11, 1), Status.problem, "out of upstream maintenance since"),
        ("v1.29.9+k3s1", date(2026, 1, 1), Status.problem, "out of upstream maintenance"),
        ("v1.40.0+k3s1", date(2026, 1, 1), Status.unchecked, "does not know"),
        ("v1.35.0", date(2026, 12, 2), Status.ok, "Kubernetes v1.35.0 (Kubernetes 1.35)"),
    ],
)
def test_kubernetes_versions_and_upstream_support(
    version: str, today: date, status: Status, words: str
) -> None:
    check = cluster_checks.kubernetes_version(version, today)
    assert check.status is status and words in check.detail
    assert (check.fix is None) == (status is Status.ok)
    if "+k3s" in version:
        assert f"k3s {version} (Kubernetes" in check.detail


def node(name: str = "n1", memory: str = "2Gi", **conditions: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {
            "allocatable": {"memory": memory, "ephemeral-storage": "40Gi"},
            "conditions": [
                {"type": kind, "status": status, "message": f"{kind} says so"}
                for kind, status in {"Ready": "True", **conditions}.items()
            ],
        },
    }


def pod(memory: str, node_name: str = "n1", phase: str = "Running", **more: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "nodeName": node_name,
        "containers": [{"name": "c", "resources": {"requests": {"memory": memory}}}],
        **more,
    }
    return {"metadata": {"name": "p", "namespace": "ns"}, "spec": spec, "status": {"phase": phase}}


def test_node_conditions() -> None:
    assert cluster_checks.node_conditions(node()).detail == (
        "Ready, no memory, disk or PID pressure; 40.0 GiB of disk for pods"
    )
    disk = cluster_checks.node_conditions(node(DiskPressure="True"))
    assert disk.status is Status.problem and disk.detail.startswith("DiskPressure: ")
    assert "k3s crictl rmi --prune" in (disk.fix or "")
    down = cluster_checks.node_conditions(node(Ready="Unknown"))
    assert down.detail == "not Ready: Ready says so" and "systemctl status k3s" in (down.fix or "")
    simulated = node()
    simulated["metadata"]["annotations"] = {"kwok.x-k8s.io/node": "fake"}
    assert cluster_checks.node_conditions(simulated).status is Status.unchecked


def test_memory_requests_beside_allocatable() -> None:
    pods = cluster_checks.active_pods_by_node(
        [pod("1Gi"), pod("512Mi"), pod("4Gi", phase="Succeeded"), pod("4Gi", node_name="n2")]
    )["n1"]
    assert cluster_checks.node_memory(node(), pods).detail == (
        "pods request 1.5 GiB of 2.0 GiB allocatable (75%)"
    )
    almost = cluster_checks.node_memory(node(), [pod("1900Mi")])
    assert almost.status is Status.warn
    over = cluster_checks.node_memory(node(), [pod("2Gi"), pod("1Mi")])
    assert over.status is Status.problem and over.detail.endswith(": more than the node has")
    assert cluster_checks.node_memory(node(memory="0"), []).status is Status.unchecked


def test_an_init_container_counts_when_it_asks_more() -> None:
    init = [{"name": "i", "resources": {"requests": {"memory": "3Gi"}}}]
    assert cluster_checks.pod_memory_request(pod("1Gi", initContainers=init)) == 3 * 1024**3


def test_pods_waiting_for_a_node() -> None:
    waiting = pod("1Gi", node_name="")
    waiting["status"]["conditions"] = [
        {"type": "PodScheduled", "reason": "Unschedulable", "message": "0/1 nodes: memory"}
    ]
    check = cluster_checks.unschedulable([waiting, pod("1Gi")])
    assert check.status is Status.problem and check.detail == (
        "1 pod(s) wait for a node: ns/p: 0/1 nodes: memory"
    )
    assert cluster_checks.unschedulable([pod("1Gi")]).status is Status.ok


# -- the public address and ports ------------------------------------------------------------


def traefik(*ips: str) -> dict[str, Any]:
    return {"status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}}


def addressed(external: str | None, internal: str) -> dict[str, Any]:
    addresses = [{"type": "InternalIP", "address": internal}]
    if external:
        addresses.append({"type": "ExternalIP", "address": external})
    return {"status": {"addresses": addresses}}


def test_where_the_public_address_comes_from() -> None:
    nodes = [addressed("198.51.100.2", "10.0.0.2"), addressed(None, "10.0.0.3")]
    assert network.public_address(traefik("203.0.113.1"), nodes, ()) == network.PublicAddress(
        ("203.0.113.1",), "the load balancer address of Service kube-system/traefik"
    )
    assert network.public_address(traefik(), nodes, ()).addresses == ("198.51.100.2",)
    internal = network.public_address(None, [addressed(None, "10.0.0.3")] * 2, ())
    assert internal == network.PublicAddress(("10.0.0.3",), "the nodes' InternalIP")
    given = network.public_address(traefik("203.0.113.1"), nodes, ("192.0.2.9",))
    assert given.given and given.addresses == ("192.0.2.9",)
    assert network.address_check(internal).status is Status.warn
    assert network.address_check(network.PublicAddress((), "nothing")).status is Status.unchecked


def test_ports_are_never_judged_from_the_node_itself_nor_on_the_lab() -> None:
    here = network.PublicAddress(("127.0.0.1",), "test")
    check = network.ports_check(here, lab=False)
    assert check.status is Status.unchecked and "this machine holds 127.0.0.1" in check.detail
    assert network.ports_check(here, lab=True).status is Status.unchecked


def test_a_tcp_connection_answers_or_says_why() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert network.answers("127.0.0.1", port) is None
    assert network.answers("127.0.0.1", port) == "connection refused (nothing listens)"


CLUSTER = network.PublicAddress(("203.0.113.1",), "test")


@pytest.mark.parametrize(
    ("addresses", "rcode", "public", "status", "words"),
    [
        (("203.0.113.1",), "NOERROR", CLUSTER, Status.ok, "resolves to 203.0.113.1, the clus"),
        (("198.51.100.9",), "NOERROR", CLUSTER, Status.problem, "not to the cluster"),
        ((), "NXDOMAIN", CLUSTER, Status.problem, "does not exist (NXDOMAIN)"),
        ((), "NOERROR", CLUSTER, Status.problem, "has no A or AAAA record (NOERROR)"),
        (
            ("198.51.100.9",),
            "NOERROR",
            network.PublicAddress(("192.168.1.10",), "the nodes' InternalIP"),
            Status.warn,
            "is private, so this is right only if it is your router's address",
        ),
    ],
)
def test_a_domain_beside_the_cluster_address(
    addresses: tuple[str, ...],
    rcode: str,
    public: network.PublicAddress,
    status: Status,
    words: str,
) -> None:
    check = network.domain_verdict("nc", "cloud.example.org", dns.Answer(addresses, rcode), public,
                                   "9.9.9.9")  # fmt: skip
    assert check.status is status and words in check.detail


def test_a_record_too_many_is_named_for_removal() -> None:
    answer = dns.Answer(("203.0.113.1", "198.51.100.9"), "NOERROR")
    check = network.domain_verdict("nc", "cloud.example.org", answer, CLUSTER, "9.9.9.9")
    assert check.status is Status.problem
    assert check.fix == (
        "At your DNS provider, point cloud.example.org (A record) to 203.0.113.1, and remove "
        "the record(s) to 198.51.100.9"
    )


# -- instances -------------------------------------------------------------------------------


def summary(**fields: Any) -> InstanceSummary:
    values: dict[str, Any] = {
        "name": "nc", "app": "nextcloud", "version": "31.0.9", "status": "installed",
        "url": None, "health": "healthy", **fields,
    }  # fmt: skip
    return InstanceSummary(**values)


def test_health_and_an_install_that_never_finished() -> None:
    assert instance_checks.health(summary(workloads={"Deployment/nc": "ready"})).status is (
        Status.ok
    )
    sick = instance_checks.health(summary(health="unhealthy", problems=["Deployment/nc gone"]))
    assert sick.detail == "Deployment/nc gone" and "libresh install nextcloud --name nc" in str(
        sick.fix
    )
    failed = instance_checks.health(summary(health="-", status="failed"))
    assert failed.status is Status.problem


@pytest.mark.parametrize(
    ("until", "status"),
    [(date(2026, 11, 1), Status.problem), (date(2027, 1, 1), Status.warn),
     (date(2027, 6, 1), Status.ok), (None, Status.unchecked)],
)  # fmt: skip
def test_upstream_maintenance(until: date | None, status: Status) -> None:
    version = Version("31.0.9", "nextcloud:31.0.9", until)
    check = instance_checks.upstream(summary(upgrade="32.0.3"), version, NOW.date())
    assert check.status is status
    if status in (Status.problem, Status.warn):
        assert check.fix == "libresh upgrade nc (to 32.0.3)"
    no_upgrade = instance_checks.upstream(summary(), version, NOW.date())
    if status is Status.problem:
        assert "Upgrade libresh for a catalog with a newer version" in str(no_upgrade.fix)


def ingress(secret: str) -> dict[str, Any]:
    return {"spec": {"tls": [{"hosts": ["x"], "secretName": secret}]}}


def certificate(not_after: datetime | None, ready: str = "True") -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": [{"type": "Ready", "status": ready, "message": "m"}]}
    if not_after:
        status["notAfter"] = not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"metadata": {"name": "nc-tls"}, "spec": {"secretName": "nc-tls"}, "status": status}


@pytest.mark.parametrize(
    ("cert", "status", "words"),
    [
        (certificate(NOW + timedelta(days=60)), Status.ok, "valid until 2027-01-31 (60 days left)"),
        (certificate(NOW + timedelta(days=15)), Status.warn, "should have renewed it"),
        (certificate(NOW + timedelta(days=5)), Status.problem, "renewals fail"),
        (certificate(NOW - timedelta(days=1), "False"), Status.problem, "expired on 2026-12-01"),
        (certificate(None, "False"), Status.problem, "not issued (m)"),
        (certificate(NOW + timedelta(days=60), "False"), Status.problem, "nc-tls: m (60 days"),
        (None, Status.problem, "no Certificate for the Ingress's TLS Secret nc-tls"),
    ],
)
def test_certificates(cert: dict[str, Any] | None, status: Status, words: str) -> None:
    (check,) = instance_checks.certificates(
        "nc", [ingress("nc-tls")], [cert] if cert else [], True, NOW
    )
    assert check.status is status and words in check.detail


def test_certificates_without_tls_or_cert_manager() -> None:
    (none,) = instance_checks.certificates("nc", [{"spec": {}}], [], True, NOW)
    assert none.status is Status.unchecked
    (missing,) = instance_checks.certificates("nc", [ingress("nc-tls")], [], False, NOW)
    assert missing.status is Status.problem and missing.fix is not None
    assert missing.fix.startswith("libresh infra install")


def record(installed: str, *backups: str) -> InstanceRecord:
    history = [HistoryEntry("install", None, "1", "ok", at=installed)]
    history += [
        HistoryEntry("backup", "1", "1", "ok", f"b{i}", at=b) for i, b in enumerate(backups)
    ]
    history.append(HistoryEntry("backup", "1", "1", "failed", "b9", at="2026-12-02T11:00:00Z"))
    return InstanceRecord("nc", "nextcloud", "1", {}, [], [], "installed", history=history)


def schedule(cron_text: str, last_success: str | None = None) -> dict[str, Any]:
    status = {"lastSuccessfulTime": last_success} if last_success else {}
    return {"spec": {"schedule": cron_text}, "status": status}


SIX_HOURS = timedelta(hours=6)


@pytest.mark.parametrize(
    ("made", "cronjob", "status", "words"),
    [
        (record("2026-11-01T00:00:00Z", "2026-12-02T03:40:00Z"), schedule("30 3 * * *"),
         Status.ok, "newest backup 8 h ago (2026-12-02 03:40 UTC)"),
        # 08:00 today started less than 6 hours ago: it may still run; yesterday's counts.
        (record("2026-11-01T00:00:00Z", "2026-12-01T08:10:00Z"), schedule("0 8 * * *"),
         Status.ok, "newest backup 27 h ago"),
        (record("2026-11-01T00:00:00Z", "2026-11-29T08:10:00Z"), schedule("0 8 * * *"),
         Status.problem, "should have made one at 2026-12-01 08:00 UTC"),
        # A scheduled run that succeeded is the CronJob's lastSuccessfulTime.
        (record("2026-11-01T00:00:00Z", "2026-11-29T08:10:00Z"),
         schedule("0 8 * * *", "2026-12-01T08:20:00Z"), Status.ok, "newest backup 27 h ago"),
        (record("2026-11-01T00:00:00Z", "2026-12-02T03:40:00Z"), schedule("0 8 * * *"),
         Status.ok, "newest backup 8 h ago"),
        (record("2026-11-01T00:00:00Z"), schedule("30 3 * * *"), Status.problem,
         "there is no complete backup"),
        (record("2026-12-02T02:00:00Z"), schedule("30 3 * * *"), Status.problem,
         "there is no complete backup"),
        (record("2026-12-02T04:00:00Z"), schedule("30 3 * * *"), Status.warn, "no backup yet"),
        (record("2026-11-01T00:00:00Z"), None, Status.warn, "never been backed up"),
        (record("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"), None, Status.warn,
         "no backup schedule; the newest backup is 30 days ago"),
        (record("2026-11-01T00:00:00Z"), schedule("bad"), Status.unchecked, "cannot be read"),
    ],
)  # fmt: skip
def test_backups_beside_their_schedule(
    made: InstanceRecord, cronjob: dict[str, Any] | None, status: Status, words: str
) -> None:
    check = instance_checks.backup(made, cronjob, NOW, SIX_HOURS)
    assert check.status is status and words in check.detail, check.detail


# -- the report ------------------------------------------------------------------------------


def test_only_problems_not_ignored_fail_the_report() -> None:
    checks = [ok("dns", "nc", "fine"), problem("kubernetes-version", "cluster", "old", "upgrade")]
    assert not Report(checks).healthy
    report = Report(checks, frozenset({"kubernetes-version"}))
    assert report.healthy
    data = report.to_dict()
    assert data["problems"] == 0 and data["checks"][1]["ignored"] is True
    assert data["checks"][1]["status"] == "problem"


def test_ignoring_an_unknown_check_is_refused() -> None:
    assert check_ignored(["dns", "backup"]) == {"dns", "backup"}
    with pytest.raises(BadInputError, match="--ignore dnss: no such check"):
        check_ignored(["dnss"])
