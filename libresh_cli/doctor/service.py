"""`libresh doctor`: run every check of the cluster and of its instances, in a few API calls
(nodes, pods, records, workloads, Ingresses, Certificates, CronJobs: one list each)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from libresh_cli.apps.catalog import Catalog
from libresh_cli.apps.inventory import MANAGED, InstanceSummary, list_instances
from libresh_cli.apps.model import Version
from libresh_cli.apps.record import RECORD_SELECTOR, InstanceRecord, RecordUnreadableError
from libresh_cli.backup.jobs import SCHEDULE_NAME
from libresh_cli.backup.service import BACKUP_TIMEOUT
from libresh_cli.doctor import cluster_checks, instance_checks, network
from libresh_cli.doctor.checks import CLUSTER, Check, Report, problem
from libresh_cli.errors import BadInputError, LibreshError, NotFoundError
from libresh_cli.kube.client import KubeClient
from libresh_cli.kube.simulated import is_lab
from libresh_cli.progress import Reporter

Manifest = dict[str, Any]
CHECKS = (
    "kubernetes-version", "node", "memory", "scheduling", "infrastructure", "cert-manager",
    "public-address", "ports", "health", "upstream", "dns", "certificate", "backup",
)  # fmt: skip


@dataclass(frozen=True)
class DoctorOptions:
    instances: tuple[str, ...] = ()  # none: every instance
    nameserver: tuple[str, int] | None = None  # the DNS server asked; None: none known
    public_addresses: tuple[str, ...] = ()  # the user's word on the cluster's address
    ignore: frozenset[str] = field(default_factory=frozenset)


def check_ignored(names: list[str]) -> frozenset[str]:
    unknown = sorted(set(names) - set(CHECKS))
    if unknown:
        raise BadInputError(
            f"--ignore {', '.join(unknown)}: no such check.", hint=f"Checks: {', '.join(CHECKS)}."
        )
    return frozenset(names)


def diagnose(
    kube: KubeClient,
    catalog: Catalog,
    options: DoctorOptions,
    reporter: Reporter,
    now: datetime | None = None,
) -> Report:
    now = now or datetime.now(UTC)
    reporter.step("Checking the cluster")
    lab = is_lab(kube)
    checks = [cluster_checks.kubernetes_version(kube.server_version(), now.date())]
    nodes = kube.list("v1", "Node")
    checks += cluster_checks.node_checks(nodes, kube.list("v1", "Pod"))
    checks.append(cluster_checks.infrastructure(kube))
    cert_check, cert_manager = cluster_checks.cert_manager(kube)
    checks.append(cert_check)
    traefik = kube.get("v1", "Service", *network.TRAEFIK)
    public = network.public_address(traefik, nodes, options.public_addresses)
    checks.append(network.address_check(public))
    reporter.step("Checking ports 80 and 443 from this machine")
    checks.append(network.ports_check(public, lab))
    checks += _instances(kube, catalog, options, reporter, now, public, cert_manager)
    return Report(checks, options.ignore)


@dataclass(frozen=True)
class _Cluster:
    """What the instance checks read, listed once across the cluster, by namespace."""

    ingresses: dict[str, list[Manifest]]
    certificates: dict[str, list[Manifest]]
    cronjobs: dict[str, Manifest]
    cert_manager: bool


def _instances(
    kube: KubeClient,
    catalog: Catalog,
    options: DoctorOptions,
    reporter: Reporter,
    now: datetime,
    public: network.PublicAddress,
    cert_manager: bool,
) -> list[Check]:
    summaries = {s.name: s for s in list_instances(kube, catalog)}
    records = _records(kube)
    wanted = options.instances or tuple(sorted(summaries))
    missing = [n for n in wanted if n not in summaries]
    if missing:
        raise NotFoundError(
            f"No instance named {', '.join(missing)} on this cluster.",
            hint="`libresh list` shows the installed instances.",
        )
    cluster = _Cluster(
        _by_namespace(kube.list("networking.k8s.io/v1", "Ingress", label_selector=MANAGED)),
        _by_namespace(kube.list("cert-manager.io/v1", "Certificate")) if cert_manager else {},
        {
            c["metadata"]["namespace"]: c
            for c in kube.list("batch/v1", "CronJob")
            if c["metadata"]["name"] == SCHEDULE_NAME
        },
        cert_manager,
    )
    checks: list[Check] = []
    for name in wanted:
        reporter.step(f"Checking {name}")
        record = records.get(name)
        if record is None:
            checks.append(problem("health", name, "its record cannot be read",
                                  f"`libresh status {name}` says why"))  # fmt: skip
            continue
        if record.status == "uninstalled":
            continue
        checks += _instance(
            summaries[name], record, _version(catalog, record), cluster, options, public, now
        )
    return checks


def _instance(
    summary: InstanceSummary,
    record: InstanceRecord,
    version: Version | None,
    cluster: _Cluster,
    options: DoctorOptions,
    public: network.PublicAddress,
    now: datetime,
) -> list[Check]:
    name = record.name
    checks = [
        instance_checks.health(summary),
        instance_checks.upstream(summary, version, now.date()),
    ]
    domain = record.params.get("domain")
    if isinstance(domain, str) and domain:
        checks.append(network.domain_check(name, domain, public, options.nameserver))
    checks += instance_checks.certificates(
        name,
        cluster.ingresses.get(name, []),
        cluster.certificates.get(name, []),
        cluster.cert_manager,
        now,
    )
    checks.append(
        instance_checks.backup(
            record, cluster.cronjobs.get(name), now, timedelta(seconds=BACKUP_TIMEOUT)
        )
    )
    return checks


def _records(kube: KubeClient) -> dict[str, InstanceRecord]:
    records = {}
    for configmap in kube.list("v1", "ConfigMap", label_selector=RECORD_SELECTOR):
        try:
            record = InstanceRecord.from_configmap(configmap)
        except RecordUnreadableError:
            continue  # listed by list_instances as "unreadable record": reported as a problem
        records[record.name] = record
    return records


def _version(catalog: Catalog, record: InstanceRecord) -> Version | None:
    try:
        return catalog.load(record.app).version(record.version)
    except LibreshError:
        return None


def _by_namespace(items: list[Manifest]) -> dict[str, list[Manifest]]:
    """An instance's objects live in its namespace, named after it."""
    found: dict[str, list[Manifest]] = {}
    for item in items:
        found.setdefault(item["metadata"].get("namespace") or "", []).append(item)
    return found


__all__ = ["CHECKS", "CLUSTER", "DoctorOptions", "check_ignored", "diagnose"]
