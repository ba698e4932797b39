"""Apps that use other apps (app.yaml `uses`): Nextcloud's office server is a Collabora
instance. An instance's record keeps which instance fills each role (`uses`); who uses an
instance is never stored, it is read from the other records, so the two sides cannot
disagree. Both sides are wired by rendering: the using instance's templates get `uses.ROLE`
(the other's URL), the used instance's get `used_by` (the domains to allow), and the used
instance is applied again whenever its users change (install, clone, uninstall)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from libresh_cli.apps.model import App, Parameter, Use
from libresh_cli.apps.params import Asker
from libresh_cli.apps.record import RECORD_SELECTOR, InstanceRecord, RecordUnreadableError, Status
from libresh_cli.errors import BadInputError, ConflictError, NotFoundError
from libresh_cli.progress import Reporter

if TYPE_CHECKING:
    from libresh_cli.apps.catalog import Catalog
    from libresh_cli.kube.client import KubeClient


def parse_use_options(options: list[str]) -> dict[str, str]:
    """`--use office=office1` (repeatable) -> {"office": "office1"}; `--use office=` or
    `--use office=none` asks for no instance."""
    chosen: dict[str, str] = {}
    for option in options:
        role, sep, instance = option.partition("=")
        if not sep or not role:
            raise BadInputError(
                f"--use {option!r} is not ROLE=INSTANCE.",
                hint="For example: --use office=office1 (see `libresh catalog show APP`).",
            )
        chosen[role.strip()] = instance.strip()
    return chosen


def installed_records(kube: KubeClient) -> list[InstanceRecord]:
    """Every readable record of an instance that is installed (or being installed)."""
    records = []
    for configmap in kube.list("v1", "ConfigMap", label_selector=RECORD_SELECTOR):
        try:
            record = InstanceRecord.from_configmap(configmap)
        except RecordUnreadableError:
            continue  # listed by `libresh list` with its problem; no link is read from it
        if record.status != Status.UNINSTALLED:
            records.append(record)
    return records


def users_of(records: list[InstanceRecord], name: str) -> list[tuple[InstanceRecord, str]]:
    """The instances that use `name`, each with the role it fills for them."""
    return sorted(
        ((r, role) for r in records for role, used in r.uses.items() if used == name),
        key=lambda pair: pair[0].name,
    )


def _described(record: InstanceRecord) -> dict[str, Any]:
    domain = record.params.get("domain")
    return {
        "instance": record.name,
        "app": record.app,
        "domain": domain,
        "url": f"https://{domain}" if domain else None,
    }


def links_for(kube: KubeClient, name: str, uses: Mapping[str, str]) -> dict[str, Any]:
    """What templates get (Instance.links): the chosen instances and the users."""
    records = {r.name: r for r in installed_records(kube)}
    return links_from(records, name, uses)


def links_from(
    records: Mapping[str, InstanceRecord], name: str, uses: Mapping[str, str]
) -> dict[str, Any]:
    chosen = {role: _described(records[used]) for role, used in uses.items() if used in records}
    used_by = [
        {**_described(record), "role": role}
        for record, role in users_of([r for r in records.values() if r.name != name], name)
    ]
    return {"uses": chosen, "used_by": used_by}


def choose_uses(
    kube: KubeClient,
    app: App,
    name: str,
    given: Mapping[str, str],
    kept: Mapping[str, str],
    ask: Asker | None,
    warnings: list[str] | None = None,
) -> dict[str, str]:
    """The instance for each role of app.yaml's `uses`: the one given with --use, else the
    one kept in the record, else the only installed instance that fits; several are asked
    about (or refused with the choices); none leaves an optional role empty (saying how to
    add one) and refuses a required one."""
    roles = {use.role: use for use in app.uses}
    for role in given:
        if role not in roles:
            known = ", ".join(sorted(roles)) or "none"
            raise BadInputError(
                f"--use {role}=…: {app.name} has no role {role!r} (its roles: {known}).",
                hint=f"See `libresh catalog show {app.name}`.",
            )
    records = [r for r in installed_records(kube) if r.name != name]
    chosen: dict[str, str] = {}
    for role, use in roles.items():
        candidates = sorted(r.name for r in records if r.app in use.apps)
        if role in given:
            instance = given[role]
            if instance in ("", "none"):
                continue
            _check_candidate(use, instance, records)
            chosen[role] = instance
        elif kept.get(role) in candidates:
            chosen[role] = kept[role]
        elif len(candidates) == 1:
            chosen[role] = candidates[0]
        elif len(candidates) > 1:
            chosen[role] = _ask_which(app, use, candidates, ask)
        elif not use.optional:
            raise NotFoundError(
                f"{app.name} needs an instance of {' or '.join(use.apps)} ({role}); "
                "none is installed.",
                hint=f"Install one first: libresh install {use.apps[0]} --domain …",
            )
        elif warnings is not None:
            warnings.append(
                f"No {' or '.join(use.apps)} instance is installed: {name} is installed "
                f"without {role}. To add one later: libresh install {use.apps[0]} --domain …, "
                f"then libresh install {app.name} --name {name} --use {role}=INSTANCE"
            )
    return chosen


def _check_candidate(use: Use, instance: str, records: list[InstanceRecord]) -> None:
    record = next((r for r in records if r.name == instance), None)
    if record is None:
        raise NotFoundError(
            f"--use {use.role}={instance}: no installed instance is named {instance}.",
            hint="`libresh list` shows the installed instances.",
        )
    if record.app not in use.apps:
        raise BadInputError(
            f"--use {use.role}={instance}: {instance} is {record.app}, and {use.role} needs "
            f"{' or '.join(use.apps)}.",
            hint=f"Give an instance of {' or '.join(use.apps)}.",
        )


def _ask_which(app: App, use: Use, candidates: list[str], ask: Asker | None) -> str:
    if ask is None:
        raise ConflictError(
            f"Several instances can be {app.name}'s {use.role}: {', '.join(candidates)}.",
            hint=f"Choose one: --use {use.role}={candidates[0]} (or --use {use.role}=none).",
        )
    question = Parameter(
        name=f"use_{use.role}",
        type="string",
        prompt=f"Which instance is {app.name}'s {use.role}? ({', '.join(candidates)})",
        default=candidates[0],
        pattern="|".join(candidates),
    )
    return str(ask(question))


def check_not_used(kube: KubeClient, name: str) -> None:
    """Refuse to uninstall an instance others use: they would lose it without a word."""
    users = users_of(installed_records(kube), name)
    if users:
        named = ", ".join(f"{record.name} ({record.app}, as its {role})" for record, role in users)
        raise ConflictError(
            f"{name} is used by {named}.",
            hint=f"Uninstall those first, or link them to another instance "
            f"(libresh install APP --name NAME --use ROLE=OTHER), or uninstall {name} "
            "anyway with --force (they then run without it).",
        )


def rewire(kube: KubeClient, catalog: Catalog, names: set[str], reporter: Reporter) -> list[str]:
    """Apply the given (used) instances again, so that their objects follow their users
    (Collabora's allowed WOPI hosts). An instance whose objects would not change is left
    alone; returns those applied."""
    from libresh_cli.apps.lifecycle import apply_and_wait, instance_for, prepare
    from libresh_cli.apps.record import read_record

    applied = []
    for name in sorted(names):
        record = read_record(kube, name)
        if record is None or record.status != Status.INSTALLED:
            continue
        app = catalog.load(record.app)
        instance = instance_for(kube, record, app, app.running_version(name, record.version))
        prepared = prepare(kube, instance, record, record.version)
        if prepared.plan.nothing_to_do:
            continue
        reporter.step(f"Updating {name}: the instances that use it changed")
        apply_and_wait(kube, prepared, reporter)
        applied.append(name)
    return applied
