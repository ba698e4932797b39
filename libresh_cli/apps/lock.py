"""One run at a time per instance: a coordination.k8s.io Lease in the instance's namespace.

Two `libresh upgrade --all` from cron (or a person's `libresh restore` while cron upgrades)
would otherwise interleave: their hook Jobs share names, one deletes the other's, maintenance
mode is turned off under a migration. So every command that changes an instance first takes
its lease, renews it while it works and releases it at the end; a second run is refused at
once (exit 5) with the holder's name, command and start time.

The lease is the Kubernetes object made for this (the one kube-controller-manager and
kube-scheduler elect their leader with): `holderIdentity`, `leaseDurationSeconds`,
`acquireTime`, `renewTime`. Taking it is a create, or an update guarded by the
resourceVersion read (two runs cannot both win; the loser gets 409). A run killed without
releasing leaves a lease that is not renewed: it is free again LEASE_SECONDS after its last
renewal. Times are the API server's clock (from its Date header), so runs on machines whose
clocks differ judge the same lease the same way.
"""

from __future__ import annotations

import getpass
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from libresh_cli.apps.instance import INSTANCE, MANAGED_BY
from libresh_cli.apps.inventory import BACKUP_SCHEDULE
from libresh_cli.errors import ConflictError, LibreshError, NotFoundError
from libresh_cli.kube.client import KubeApiError, KubeClient

LEASE_NAME = "libresh-lock"
LEASE_API = "coordination.k8s.io/v1"
LEASE_SECONDS = 90
RENEW_EVERY = 15.0  # six chances to renew before the lease runs out
MICROTIME = "%Y-%m-%dT%H:%M:%S.%fZ"
CRONJOB_API = "batch/v1"
# On the backup schedule while a run holds the lease: who suspended it (backup_schedule_paused).
PAUSED_BY = "libresh.dev/paused-by"
SCHEDULED_BACKUP_WAIT = 600.0  # a nightly backup of a co-op's instance takes minutes
POLL_SECONDS = 2.0

Manifest = dict[str, Any]


class InstanceBusyError(ConflictError):
    """Another run holds the instance's lease."""

    def __init__(self, name: str, holder: Holder, age: timedelta | None) -> None:
        renewed = f", last renewed {_seconds(age)} ago" if age is not None else ""
        super().__init__(
            f"{name} is busy: {holder.describe()} is working on it{renewed}.",
            hint=(
                "Wait for it to finish and run this again. If that run is gone (killed, its "
                f"machine off), its lease frees itself {LEASE_SECONDS} s after the last "
                "renewal."
            ),
        )
        self.holder = holder


class ScheduledBackupRunningError(ConflictError):
    def __init__(self, name: str, jobs: list[str], waited: float) -> None:
        super().__init__(
            f"A scheduled backup of {name} is still running after {int(waited)} s "
            f"(Job {', '.join(jobs)}): nothing was changed.",
            hint=f"Run this again once it has finished (libresh backup list {name}).",
        )


class LeaseLostError(ConflictError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"The lease on {name} was lost (not renewed in time, then taken by another run): "
            "stopping before changing anything more.",
            hint=f"See what the other run did (libresh status {name}) before running again.",
        )


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, as written in holderIdentity: one line, readable by people."""

    action: str
    user: str
    host: str
    pid: int
    token: str

    def identity(self) -> str:
        return f"libresh {self.action} by {self.user}@{self.host} pid {self.pid} [{self.token}]"

    def describe(self) -> str:
        return f"`libresh {self.action}` by {self.user}@{self.host} (pid {self.pid})"

    @classmethod
    def here(cls, action: str) -> Holder:
        return cls(action, _user(), socket.gethostname(), os.getpid(), secrets.token_hex(4))

    @classmethod
    def parse(cls, identity: str) -> Holder:
        """Best effort: a lease written by something else is shown as it is."""
        try:
            words, token = identity.rsplit(" [", 1)
            head, pid = words.rsplit(" pid ", 1)
            action, who = head.removeprefix("libresh ").rsplit(" by ", 1)
            user, host = who.rsplit("@", 1)
            return cls(action, user, host, int(pid), token.rstrip("]"))
        except ValueError:
            return cls(identity, "?", "?", 0, "")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _seconds(age: timedelta) -> str:
    return f"{max(0, int(age.total_seconds()))} s"


class InstanceLease:
    """A held lease, renewed by a background thread until released."""

    def __init__(self, kube: KubeClient, name: str, holder: Holder) -> None:
        self.kube = kube
        self.name = name
        self.holder = holder
        self.resource_version = ""
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        current = self.kube.get(LEASE_API, "Lease", LEASE_NAME, self.name)
        if current is None:
            try:
                self._store(self.kube.create(self._lease(None)))
                return
            except KubeApiError as error:
                if error.status == 404:  # no such namespace
                    raise NotFoundError(
                        f"No instance named '{self.name}' on this cluster.",
                        hint="`libresh list` shows the installed instances.",
                    ) from error
                if error.status != 409:
                    raise
                current = self.kube.get(LEASE_API, "Lease", LEASE_NAME, self.name)
                if current is None:  # made and deleted in between: a busy instance anyway
                    raise
        self._take_over(current)

    def _take_over(self, current: Manifest) -> None:
        spec = current.get("spec") or {}
        identity = str(spec.get("holderIdentity") or "")
        renewed = _parse_time(spec.get("renewTime") or spec.get("acquireTime"))
        duration = int(spec.get("leaseDurationSeconds") or LEASE_SECONDS)
        now = self.kube.server_now()
        age = now - renewed if renewed else None
        if identity and (age is None or age < timedelta(seconds=duration)):
            raise InstanceBusyError(self.name, Holder.parse(identity), age)
        try:
            self._store(self.kube.replace(self._lease(current)))
        except KubeApiError as error:
            if error.status != 409:
                raise
            # Another run took it between our read and our write: it is theirs.
            again = self.kube.get(LEASE_API, "Lease", LEASE_NAME, self.name) or {}
            holder = str((again.get("spec") or {}).get("holderIdentity") or "another run")
            raise InstanceBusyError(self.name, Holder.parse(holder), None) from error

    def _lease(self, current: Manifest | None) -> Manifest:
        now = self.kube.server_now().strftime(MICROTIME)
        metadata: Manifest = {
            "name": LEASE_NAME,
            "namespace": self.name,
            "labels": {MANAGED_BY: "libresh", INSTANCE: self.name},
        }
        if current is not None:
            metadata["resourceVersion"] = current["metadata"]["resourceVersion"]
        return {
            "apiVersion": LEASE_API,
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": self.holder.identity(),
                "leaseDurationSeconds": LEASE_SECONDS,
                "acquireTime": now,
                "renewTime": now,
            },
        }

    def _store(self, lease: Manifest) -> None:
        self.resource_version = str(lease["metadata"]["resourceVersion"])
        self._spec = lease["spec"]

    def start_renewing(self) -> None:
        self._thread = threading.Thread(target=self._renew_loop, name="lease", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(RENEW_EVERY):
            try:
                self.renew()
            except LibreshError:
                # The API is away for longer than the client's retries: try again next time;
                # the lease lasts six renewals.
                continue

    def renew(self) -> None:
        lease = {
            "apiVersion": LEASE_API,
            "kind": "Lease",
            "metadata": {
                "name": LEASE_NAME,
                "namespace": self.name,
                "resourceVersion": self.resource_version,
                "labels": {MANAGED_BY: "libresh", INSTANCE: self.name},
            },
            "spec": {**self._spec, "renewTime": self.kube.server_now().strftime(MICROTIME)},
        }
        try:
            self._store(self.kube.replace(lease))
        except KubeApiError as error:
            if error.status in (404, 409):
                self.lost = True
                self._stop.set()
                return
            raise

    def check(self) -> None:
        """Raise if the lease was lost: called before each step that changes the instance."""
        if self.lost:
            raise LeaseLostError(self.name)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.lost:
            return
        # Deleted only if still ours (the resourceVersion we last wrote); gone, taken over
        # or the API away, it expires by itself.
        with suppress(LibreshError):
            self.kube.request(
                "DELETE",
                self.kube.path_for(LEASE_API, "Lease", LEASE_NAME, self.name),
                body={"preconditions": {"resourceVersion": self.resource_version}},
            )


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    for layout in (MICROTIME, "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(value, layout).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


_held: dict[tuple[int, str], InstanceLease] = {}


@contextmanager
def instance_lock(
    kube: KubeClient, name: str, action: str, namespace: Manifest | None = None
) -> Iterator[InstanceLease]:
    """Hold `name`'s lease for the block. Nested use in one process (an upgrade taking its
    backup) reuses the lease already held. `namespace`: the instance's Namespace, applied
    first (a new instance's lease needs its namespace to live in)."""
    key = (id(kube), name)
    if key in _held:
        yield _held[key]
        return
    if namespace is not None:
        kube.apply(namespace)
    lease = InstanceLease(kube, name, Holder.here(action))
    lease.acquire()
    lease.start_renewing()
    _held[key] = lease
    try:
        with backup_schedule_paused(kube, name, lease.holder):
            yield lease
    finally:
        del _held[key]
        lease.release()


@contextmanager
def backup_schedule_paused(
    kube: KubeClient, name: str, holder: Holder, wait: float = SCHEDULED_BACKUP_WAIT
) -> Iterator[None]:
    """The instance's backup schedule suspended while the lease is held, after any scheduled
    backup already running has finished: a backup taken by cron in the middle of an upgrade
    or a restore would be the newest one, of data half migrated or half restored, and the one
    the next restore picks. The CronJob cannot take the lease itself (its runner image has no
    API client), so libresh keeps it off instead.

    A schedule the person suspended (no libresh annotation) stays as it is. One left suspended
    by a run that was killed (annotated, its lease gone, since we now hold it) is taken over
    and resumed at the end of this run. A nightly time that passed meanwhile is not lost: a
    CronJob without startingDeadlineSeconds starts its missed run when resumed (Kubernetes
    docs, "CronJob", Schedule suspension), so the backup comes right after the upgrade."""
    schedule = kube.get(CRONJOB_API, "CronJob", BACKUP_SCHEDULE[0], name)
    if schedule is None:
        yield
        return
    spec = schedule.get("spec") or {}
    annotations = (schedule.get("metadata") or {}).get("annotations") or {}
    if spec.get("suspend") and PAUSED_BY not in annotations:
        yield  # suspended by its owner: not ours to resume
        return
    _set_suspended(kube, name, True, holder.identity())
    try:
        _wait_for_scheduled_backups(kube, name, wait)
        yield
    finally:
        with suppress(LibreshError):  # the instance may be gone (uninstall deletes it)
            _set_suspended(kube, name, False, None)


def _set_suspended(kube: KubeClient, name: str, suspended: bool, by: str | None) -> None:
    try:
        kube.request(
            "PATCH",
            kube.path_for(CRONJOB_API, "CronJob", BACKUP_SCHEDULE[0], name),
            body={"metadata": {"annotations": {PAUSED_BY: by}}, "spec": {"suspend": suspended}},
            content_type="application/merge-patch+json",
        )
    except KubeApiError as error:
        if error.status != 404:
            raise


def _wait_for_scheduled_backups(kube: KubeClient, name: str, wait: float) -> None:
    """Until the CronJob lists no active Job (its controller removes a Job from status.active
    once the Job has finished)."""
    deadline = time.monotonic() + wait
    while True:
        schedule = kube.get(CRONJOB_API, "CronJob", BACKUP_SCHEDULE[0], name) or {}
        active = [
            ref.get("name", "?") for ref in (schedule.get("status") or {}).get("active") or []
        ]
        if not active:
            return
        if time.monotonic() >= deadline:
            raise ScheduledBackupRunningError(name, active, wait)
        time.sleep(POLL_SECONDS)
