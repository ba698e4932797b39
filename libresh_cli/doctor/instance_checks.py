"""Checks of one instance: health, upstream maintenance, certificate, backups. Each verdict is
a pure function of what the record, the catalog and the API said."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from libresh_cli.apps.inventory import InstanceSummary
from libresh_cli.apps.model import Version
from libresh_cli.apps.record import InstanceRecord
from libresh_cli.doctor import cron
from libresh_cli.doctor.checks import Check, ok, problem, unchecked, warn

Manifest = dict[str, Any]
MAINTENANCE_WARN = timedelta(days=60)
# cert-manager renews a certificate when a third of its life is left (30 days of Let's
# Encrypt's 90, https://cert-manager.io/docs/usage/certificate/#renewal): fewer days than
# that mean renewals fail.
CERTIFICATE_WARN_DAYS = 21
CERTIFICATE_PROBLEM_DAYS = 10
FIX_CERTIFICATE = (
    "`kubectl -n {ns} describe certificate {name}` and its CertificateRequest, Order and "
    "Challenge say why; Let's Encrypt must reach http://DOMAIN/.well-known/ (DNS and port 80); "
    "`libresh infra status` for the ClusterIssuer"
)


def health(summary: InstanceSummary) -> Check:
    if summary.health == "healthy":
        running = ", ".join(sorted(summary.workloads)) or "its workloads"
        return ok("health", summary.name, f"{running} ready")
    if summary.health == "unhealthy":
        return problem(
            "health",
            summary.name,
            "; ".join(summary.problems),
            f"`libresh status {summary.name}` says more; `libresh install {summary.app} "
            f"--name {summary.name}` re-makes what is missing",
        )
    if summary.status in ("failed", "installing"):  # a first install that never finished
        return problem(
            "health",
            summary.name,
            f"its install did not finish (status {summary.status})",
            f"`libresh status {summary.name}` shows the last error; `libresh install "
            f"{summary.app} --name {summary.name}` again goes on",
        )
    return unchecked("health", summary.name, f"the instance is {summary.status}")


def upstream(summary: InstanceSummary, version: Version | None, today: date) -> Check:
    """Whether upstream still maintains the installed version's series."""
    name, what = summary.name, f"{summary.app} {summary.version}"
    if version is None:
        return unchecked("upstream", name, f"the catalog (libresh's and --catalog) has no {what}")
    until = version.maintained_until
    if until is None:
        return unchecked(
            "upstream", name, f"the catalog does not say until when upstream maintains {what}"
        )
    upgrade = (
        f"libresh upgrade {name} (to {summary.upgrade})"
        if summary.upgrade
        else "Upgrade libresh for a catalog with a newer version, then libresh upgrade " + name
    )
    if today > until:
        return problem(
            "upstream",
            name,
            f"upstream stopped maintaining {what} on {until}: no security fixes",
            upgrade,
        )
    if until - today <= MAINTENANCE_WARN:
        return warn("upstream", name, f"upstream maintains {what} until {until}", upgrade)
    return ok("upstream", name, f"upstream maintains {what} until {until}")


def tls_secrets(ingresses: list[Manifest]) -> list[str]:
    return sorted(
        {
            tls["secretName"]
            for ingress in ingresses
            for tls in (ingress.get("spec") or {}).get("tls") or []
            if tls.get("secretName")
        }
    )


def certificates(
    name: str,
    ingresses: list[Manifest],
    found: list[Manifest],
    cert_manager: bool,
    now: datetime,
) -> list[Check]:
    """One check per TLS Secret the instance's Ingresses name: the Certificate that
    cert-manager's ingress-shim makes for it (spec.secretName), Ready, and its days left."""
    secrets = tls_secrets(ingresses)
    if not secrets:
        return [unchecked("certificate", name, "the instance has no Ingress with TLS")]
    if not cert_manager:
        return [
            problem(
                "certificate",
                name,
                "no certificate: cert-manager is not installed",
                "libresh infra install --email YOU@EXAMPLE.ORG",
            )
        ]
    by_secret = {(c.get("spec") or {}).get("secretName"): c for c in found}
    return [certificate(name, s, by_secret.get(s), now) for s in secrets]


def certificate(name: str, secret: str, found: Manifest | None, now: datetime) -> Check:
    if found is None:
        return problem(
            "certificate",
            name,
            f"no Certificate for the Ingress's TLS Secret {secret}: cert-manager has not made one",
            f"The Ingress needs the annotation cert-manager.io/cluster-issuer (`kubectl -n {name} "
            "get ingress -o yaml`); `libresh infra status` for cert-manager itself",
        )
    fix = FIX_CERTIFICATE.format(ns=name, name=found["metadata"]["name"])
    status = found.get("status") or {}
    ready: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {}
    )
    not_after = _time(status.get("notAfter"))
    if not_after is None:
        why = ready.get("message") or "no certificate issued yet"
        return problem("certificate", name, f"{secret}: not issued ({why})", fix)
    days = (not_after - now).days
    if not_after <= now:
        return problem("certificate", name, f"{secret}: expired on {not_after:%Y-%m-%d}", fix)
    if ready.get("status") != "True":
        why = ready.get("message") or "not Ready"
        return problem("certificate", name, f"{secret}: {why} ({days} days left)", fix)
    detail = f"{secret}: valid until {not_after:%Y-%m-%d} ({days} days left)"
    if days < CERTIFICATE_PROBLEM_DAYS:
        return problem("certificate", name, f"{detail}: renewals fail", fix)
    if days < CERTIFICATE_WARN_DAYS:
        return warn("certificate", name, f"{detail}: cert-manager should have renewed it", fix)
    return ok("certificate", name, detail)


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def newest_backup(record: InstanceRecord, cronjob: Manifest | None) -> datetime | None:
    """The newest complete backup libresh knows of: `backup now` and upgrades write it in the
    record's history; a scheduled run that succeeded is the CronJob's lastSuccessfulTime (the
    runner exits 0 only once the backup's `complete` snapshot is written)."""
    times = [
        _time(entry.at)
        for entry in record.history
        if entry.action == "backup" and entry.result == "ok"
    ]
    if cronjob is not None:
        times.append(_time((cronjob.get("status") or {}).get("lastSuccessfulTime")))
    known = [t for t in times if t is not None]
    return max(known) if known else None


def installed_at(record: InstanceRecord) -> datetime | None:
    for entry in record.history:
        if entry.action == "install" and entry.result == "ok":
            return _time(entry.at)
    return None


def backup(
    record: InstanceRecord,
    cronjob: Manifest | None,
    now: datetime,
    run_time: timedelta,
) -> Check:
    """The newest complete backup beside the schedule: a problem when a scheduled run that
    should have finished (started more than `run_time` ago) left no newer backup."""
    name = record.name
    newest = newest_backup(record, cronjob)
    ago = f"{_age(now - newest)} ago ({newest:%Y-%m-%d %H:%M} UTC)" if newest else None
    schedule = str(((cronjob or {}).get("spec") or {}).get("schedule") or "") or None
    fix_schedule = f'libresh backup schedule {name} --cron "30 3 * * *"'
    if schedule is None:
        said = f"the newest backup is {ago}" if ago else "it has never been backed up"
        return warn("backup", name, f"no backup schedule; {said}", fix_schedule)
    since = installed_at(record)
    try:
        due = cron.last_run(schedule, now - run_time, since=since)
    except cron.CronError as error:
        return unchecked("backup", name, f"its schedule cannot be read ({error})", fix_schedule)
    if due is None:
        if newest is None:
            return warn(
                "backup",
                name,
                f"no backup yet; the schedule {schedule!r} (UTC) has "
                "not run since the instance was installed",
                f"libresh backup now {name}",
            )
        return ok("backup", name, f"newest backup {ago}; schedule {schedule!r} (UTC)")
    if newest is None or newest < due:
        said = f"the newest complete backup is {ago}" if ago else "there is no complete backup"
        return problem(
            "backup",
            name,
            f"{said}, and the schedule {schedule!r} (UTC) should have made one at "
            f"{due:%Y-%m-%d %H:%M} UTC",
            f"libresh backup now {name} (it says why it fails); the scheduled runs: "
            f"`kubectl -n {name} get jobs`, `kubectl -n {name} logs job/JOB`",
        )
    return ok("backup", name, f"newest backup {ago}; schedule {schedule!r} (UTC)")


def _age(delta: timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    if hours < 48:
        return f"{max(hours, 0)} h"
    return f"{hours // 24} days"
