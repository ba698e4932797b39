"""Planning, without touching the cluster: upgrade paths and what applying objects would change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from libresh_cli.apps.model import App, Version
from libresh_cli.apps.record import Ref
from libresh_cli.errors import BadInputError, NotFoundError
from libresh_cli.kube.diff import changed_fields, normalize

# Never deleted because a new version stops rendering them: they hold users' data.
NEVER_PRUNED = {"PersistentVolumeClaim"}
JOB_REMADE = "spec.template: changed (the Job is made anew)"


@dataclass(frozen=True)
class Change:
    ref: Ref
    action: str  # create | update | unchanged | prune | keep
    fields: tuple[str, ...] = ()  # of an update: "path: old -> new"

    def describe(self) -> str:
        _, kind, name = self.ref
        return f"{self.action:9} {kind}/{name}"


@dataclass
class Plan:
    instance: str
    app: str
    version_from: str | None
    version_to: str
    changes: list[Change] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)  # upgrade path and hooks, in order
    # An installed instance's settings this run changes: (parameter, old, new). Never
    # secrets (the record holds none).
    settings: list[tuple[str, Any, Any]] = field(default_factory=list)
    # The values the instance is (or will be) installed with, never secrets.
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def nothing_to_do(self) -> bool:
        return (
            self.version_from == self.version_to
            and not self.settings
            and all(c.action in ("unchanged", "keep") for c in self.changes)
        )

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)

    def to_dict(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "app": self.app,
            "from": self.version_from,
            "to": self.version_to,
            "nothing_to_do": self.nothing_to_do,
            "steps": self.steps,
            "settings": [{"name": n, "from": a, "to": b} for n, a, b in self.settings],
            "values": self.values,
            "changes": [
                {
                    "action": c.action,
                    "apiVersion": c.ref[0],
                    "kind": c.ref[1],
                    "name": c.ref[2],
                    **({"fields": list(c.fields)} if c.fields else {}),
                }
                for c in self.changes
            ],
        }


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def upgrade_path(app: App, current: str, target: str | None = None) -> list[Version]:
    """The versions to step through from `current` to `target` (default: the newest).
    With one_major_at_a_time, each major between them is visited at its newest version."""
    wanted = app.version(target) if target else app.latest
    if wanted is None:
        known = ", ".join(v.version for v in app.versions)
        raise NotFoundError(
            f"{app.name} has no version {target} in the catalog.", hint=f"Known versions: {known}."
        )
    if _key(wanted.version) < _key(current):
        raise BadInputError(
            f"{wanted.version} is older than the installed {current}: libresh does not "
            "downgrade (data migrations only go forward).",
            hint="To go back, restore a backup taken before the upgrade.",
        )
    newer = [v for v in app.versions if _key(current) < _key(v.version) <= _key(wanted.version)]
    if not app.one_major_at_a_time:
        return newer[-1:]
    path: list[Version] = []
    for version in newer:
        if path and path[-1].major == version.major:
            path[-1] = version  # the newest of each major
        else:
            path.append(version)
    current_major = int(current.split(".")[0])
    if path and path[0].major > current_major + 1:
        raise BadInputError(
            f"{app.name} cannot go from {current} to {path[0].version}: it must pass through "
            f"major {current_major + 1}, which the catalog does not have.",
            hint="Update libresh's catalog, which keeps every major of an app.",
        )
    return path


def compare(
    rendered_refs: list[Ref],
    live: Mapping[Ref, Mapping[str, Any] | None],
    would_be: Mapping[Ref, Mapping[str, Any]],
    previous_inventory: list[Ref],
) -> list[Change]:
    """Each rendered object is created, updated or unchanged; objects of the previous
    inventory that are no longer rendered are pruned (or kept, for data)."""
    changes = []
    for ref in rendered_refs:
        current = live.get(ref)
        if current is None:
            changes.append(Change(ref, "create"))
        elif ref in would_be and normalize(would_be[ref]) == normalize(current):
            changes.append(Change(ref, "unchanged"))
        elif ref in would_be:
            changes.append(Change(ref, "update", tuple(changed_fields(current, would_be[ref]))))
        else:  # a Job whose pod template changes: no dry run (lifecycle._dry_run)
            changes.append(
                Change(ref, "update", ("spec.template: changed (the Job is made anew)",))
            )
    for ref in previous_inventory:
        if ref not in rendered_refs:
            changes.append(Change(ref, "keep" if ref[1] in NEVER_PRUNED else "prune"))
    return changes
