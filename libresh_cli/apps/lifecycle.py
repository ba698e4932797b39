"""Installing and upgrading instances: plan first (with the server's dry run), then act."""

from __future__ import annotations

import copy
import secrets as random_secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from libresh_cli.apps import hooks, links
from libresh_cli.apps.catalog import Catalog
from libresh_cli.apps.health import (
    CRASHES_BEFORE_GIVING_UP,
    CRASHES_DURING_UPGRADE,
    wait_healthy,
)
from libresh_cli.apps.instance import INSTANCE, MANAGED_BY, Instance
from libresh_cli.apps.model import App, Version
from libresh_cli.apps.params import (
    Asker,
    GivenValues,
    coerce,
    resolve,
    validate_instance_name,
)
from libresh_cli.apps.plan import Plan, compare
from libresh_cli.apps.providers import providers_for_new_instance, read_settings, services_for
from libresh_cli.apps.record import (
    Action,
    HistoryEntry,
    InstanceRecord,
    Ref,
    Result,
    Status,
    read_record,
    refs_of,
    save_record,
)
from libresh_cli.apps.relay import mail_for, no_relay_warning
from libresh_cli.apps.render import (
    CREDENTIALS_SECRET,
    FOR_JOB,
    generated_secret_keys,
    provisioning_secrets,
    render,
)
from libresh_cli.apps.serving import unserved_ingresses
from libresh_cli.apps.sso import kept_oidc, planned_oidc, provision
from libresh_cli.errors import ConflictError, NotFoundError
from libresh_cli.kube.client import KubeApiError, KubeClient
from libresh_cli.kube.store import read_secret
from libresh_cli.progress import Reporter

Manifest = dict[str, Any]


@dataclass
class Prepared:
    """Everything an install or upgrade step will do, computed before anything is done."""

    instance: Instance
    objects: list[Manifest]
    plan: Plan
    record: InstanceRecord | None
    hooks: list[str] = field(default_factory=list)
    # Where the instances it uses come from: they are applied again after the install when
    # their users changed (libresh_cli/apps/links.py rewire).
    catalog: Catalog | None = None
    warnings: list[str] = field(default_factory=list)


class Safeguard(Protocol):
    """Called around each upgrade step: the backup issue plugs a pre-upgrade backup and its
    restore in here. `before_step` raising aborts the upgrade before the app is touched."""

    def before_step(self, instance: str, version_from: str, version_to: str) -> str | None: ...

    def restore(self, instance: str, token: str) -> None: ...


class NoSafeguard:
    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def before_step(self, instance: str, version_from: str, version_to: str) -> str | None:
        self.reporter.warn(
            f"No backup of {instance} is taken before {version_from} -> {version_to} "
            "(--no-backup): a failed step can bring back the previous version, not its data."
        )
        return None

    def restore(self, instance: str, token: str) -> None:
        raise AssertionError("NoSafeguard takes no backups, so there is nothing to restore")


def existing_secret_values(kube: KubeClient, namespace: str) -> dict[str, str]:
    return read_secret(kube, CREDENTIALS_SECRET, namespace)


def secret_values_for(
    app: App, existing: Mapping[str, str], given: Mapping[str, str]
) -> dict[str, str]:
    """Kept values stay (the database was initialised with them), missing ones are generated."""
    values = dict(existing)
    for key, length in generated_secret_keys(app).items():
        values.setdefault(key, random_secrets.token_urlsafe(length)[:length])
    values.update(given)
    return values


def prepare(
    kube: KubeClient, instance: Instance, record: InstanceRecord | None, version_from: str | None
) -> Prepared:
    objects = render(instance)
    _check_hosts_free(kube, instance.namespace, objects)
    refs = refs_of(objects)
    inventory = record.inventory if record else []
    if kube.get("v1", "Namespace", instance.namespace) is None:
        changes = compare(refs, {}, {}, inventory)
    else:
        live = dict(zip(refs, kube.get_many(refs, instance.namespace), strict=True))
        existing = [o for o, r in zip(objects, refs, strict=True) if live[r] is not None]
        changes = compare(refs, live, _dry_run(kube, existing), inventory)
    plan = Plan(instance.name, instance.app.name, version_from, instance.version.version, changes)
    return Prepared(instance, objects, plan, record)


def _hosts(ingress: Manifest) -> set[str]:
    rules = (ingress.get("spec") or {}).get("rules") or []
    return {str(rule["host"]) for rule in rules if isinstance(rule, dict) and rule.get("host")}


def _check_hosts_free(kube: KubeClient, namespace: str, objects: list[Manifest]) -> None:
    """One domain, one instance: two Ingresses for one host would split its traffic between
    two apps (Traefik picks either), and the second one's certificate would replace the
    first one's."""
    wanted = set().union(*(_hosts(o) for o in objects if o.get("kind") == "Ingress"))
    if not wanted:
        return
    for ingress in kube.list("networking.k8s.io/v1", "Ingress"):
        metadata = ingress.get("metadata") or {}
        if metadata.get("namespace") == namespace:
            continue
        taken = wanted & _hosts(ingress)
        if taken:
            owner = (metadata.get("labels") or {}).get(INSTANCE) or metadata.get("namespace")
            raise ConflictError(
                f"The domain {sorted(taken)[0]} is already used by {owner} "
                f"(Ingress {metadata.get('namespace')}/{metadata.get('name')}).",
                hint=f"Choose another --domain for {namespace}, or uninstall {owner} first.",
            )


def _dry_run(kube: KubeClient, existing: list[Manifest]) -> dict[Ref, Manifest]:
    """What applying would make of each existing object. A Job whose pod template would
    change cannot be applied at all (the API refuses it: 422, the template is immutable; e.g.
    the version label of a new release): it has no dry run and is planned as an update, which
    replace_changed_jobs does by deleting and re-creating it."""
    others = [m for m in existing if m["kind"] != "Job"]
    would_be = dict(zip(refs_of(others), kube.apply_all(others, dry_run=True), strict=True))
    for job in (m for m in existing if m["kind"] == "Job"):
        try:
            would_be[refs_of([job])[0]] = kube.apply(job, dry_run=True)
        except KubeApiError as error:
            if error.status != 422:
                raise
    return would_be


def plan_install(
    kube: KubeClient,
    catalog: Catalog,
    app_name: str,
    name: str | None,
    given: GivenValues,
    version: str | None,
    ask: Asker | None,
    uses: Mapping[str, str] | None = None,
) -> Prepared:
    app = catalog.load(app_name)
    name = validate_instance_name(name or app.name)
    record = read_record(kube, name)
    _check_name_free(kube, name, app, record)
    chosen = _choose_version(app, version, record)
    kept = stored_params(app, record.params, f"the record of {name}") if record else None
    plain, given_secrets = resolve(app, given, kept, ask)
    secret_values = secret_values_for(app, existing_secret_values(kube, name), given_secrets)
    settings, passwords = read_settings(kube)
    pinned = (
        record.services
        if record and record.services
        else providers_for_new_instance(settings, app.requires)
    )
    services, service_secrets = services_for(pinned, settings, passwords)
    instance = Instance(
        name,
        app,
        chosen,
        plain,
        secret_values,
        services,
        service_secrets,
        mail=mail_for(kube, app),
    )
    warnings: list[str] = []
    kept_uses = record.uses if record else {}
    chosen_uses = links.choose_uses(kube, app, name, uses or {}, kept_uses, ask, warnings)
    instance = replace(instance, links=links.links_for(kube, name, chosen_uses))
    # Before the plan: no provider, or allowed groups that do not exist, stop it here.
    instance = replace(instance, oidc=planned_oidc(kube, app, name, plain))
    prepared = prepare(kube, instance, record, record.version if record else None)
    prepared.catalog, prepared.warnings = catalog, warnings
    prepared.plan.values = dict(plain)
    if kept is not None and record is not None and record.status != Status.UNINSTALLED:
        prepared.plan.settings = [
            (key, kept.get(key), plain.get(key))
            for key in sorted(set(kept) | set(plain))
            if kept.get(key) != plain.get(key)
        ] + [
            (f"uses.{role}", kept_uses.get(role), instance.uses.get(role))
            for role in sorted(set(kept_uses) | set(instance.uses))
            if kept_uses.get(role) != instance.uses.get(role)
        ]
    return prepared


def instance_for(kube: KubeClient, record: InstanceRecord, app: App, version: Version) -> Instance:
    """An installed instance at `version`, with what _instance_of_record gives and the
    instances it uses or that use it (libresh_cli/apps/links.py)."""
    instance = _instance_of_record(kube, record, app, version)
    instance = replace(instance, links=links.links_for(kube, record.name, record.uses))
    return replace(instance, oidc=kept_oidc(kube, app, record.name))


def _instance_of_record(
    kube: KubeClient, record: InstanceRecord, app: App, version: Version
) -> Instance:
    """An installed instance at `version`, with its kept values, secrets and providers."""
    settings, passwords = read_settings(kube)
    pinned = record.services or {kind: "embedded" for kind in app.requires}
    services, service_secrets = services_for(pinned, settings, passwords)
    return Instance(
        record.name,
        app,
        version,
        stored_params(app, record.params, f"the record of {record.name}"),
        existing_secret_values(kube, record.name),
        services,
        service_secrets,
        mail=mail_for(kube, app),
    )


def stored_params(app: App, params: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Values kept in a record or a backup, checked like a person's: a record edited by hand
    (or a backup from elsewhere) must not put into a template what the command line would
    refuse, e.g. a size with a newline that adds a field to a volume claim. Keys the app no
    longer has are dropped."""
    checked = {}
    for parameter in app.parameters:
        if parameter.name in params and not parameter.secret:
            source = f"{where}, parameter {parameter.name}"
            checked[parameter.name] = coerce(parameter, params[parameter.name], source)
    return checked


def _check_name_free(kube: KubeClient, name: str, app: App, record: InstanceRecord | None) -> None:
    if record is not None and record.status == Status.UPGRADING:
        raise ConflictError(
            f"An upgrade of {name} was interrupted (from {record.version}).",
            hint=f"Re-run it to finish or roll it back: libresh upgrade {name}",
        )
    if record is not None and record.app != app.name:
        raise ConflictError(
            f"The name '{name}' is taken by an instance of {record.app}.",
            hint="Choose another with --name.",
        )
    if record is None:
        namespace = kube.get("v1", "Namespace", name)
        labels = (namespace or {}).get("metadata", {}).get("labels", {}) or {}
        if namespace is not None and labels.get(MANAGED_BY) != "libresh":
            raise ConflictError(
                f"The namespace '{name}' exists and libresh does not manage it.",
                hint="Choose another instance name with --name.",
            )


def never_installed(record: InstanceRecord) -> bool:
    """A first install that failed or was interrupted: it never completed, so another
    version may be tried and the post_install hooks are still to run."""
    return record.status in (Status.FAILED, Status.INSTALLING) and not any(
        h.action == Action.INSTALL and h.result == Result.OK for h in record.history
    )


def _choose_version(app: App, wanted: str | None, record: InstanceRecord | None) -> Version:
    if record is not None and record.status != Status.UNINSTALLED and not never_installed(record):
        if wanted and wanted != record.version:
            raise ConflictError(
                f"{record.name} is installed at {record.version}; install does "
                f"not change versions.",
                hint=f"Use `libresh upgrade {record.name} --to {wanted}`.",
            )
        return app.running_version(record.name, record.version)
    if wanted is None:
        return app.latest
    version = app.version(wanted)
    if version is None:
        raise NotFoundError(
            f"{app.name} has no version {wanted}.",
            hint="Known versions: " + ", ".join(v.version for v in app.versions),
        )
    return version


def health_workloads(instance: Instance, objects: list[Manifest]) -> list[tuple[str, str]]:
    """The declared workloads that this instance renders (a declared `StatefulSet/postgres`
    is not there with an external postgres), else every Deployment and StatefulSet; and
    every Job it renders, which must complete (e.g. provisioning its database)."""
    rendered = [(o["kind"], o["metadata"]["name"]) for o in objects]
    declared = [
        (k, n)
        for k, n in (w.split("/", 1) for w in instance.app.health.workloads)
        if (k, n) in rendered
    ]
    if not declared:
        declared = [(k, n) for k, n in rendered if k in ("Deployment", "StatefulSet")]
    return declared + [(k, n) for k, n in rendered if k == "Job"]


def replace_changed_jobs(kube: KubeClient, prepared: Prepared) -> None:
    """A Job's pod template cannot change: a Job that would change is deleted first, then
    created again (which also runs it again)."""
    namespace = prepared.instance.namespace
    for change in prepared.plan.changes:
        if change.ref[1] == "Job" and change.action == "update":
            kube.delete_and_wait(*change.ref, namespace)


def apply_and_wait(kube: KubeClient, prepared: Prepared, reporter: Reporter) -> None:
    instance = prepared.instance
    reporter.step(f"Applying {len(prepared.objects)} objects")
    replace_changed_jobs(kube, prepared)
    transient = transient_secrets(prepared)
    try:
        if transient:
            kube.apply(prepared.objects[0])  # the namespace they go in
            kube.apply_all(transient)
        kube.apply_all(prepared.objects)
        _owned_by_their_jobs(kube, transient)
        prune(kube, prepared)
        # Moving between versions (an upgrade step, a rollback) the data is there already:
        # a version that crashes twice will not come up.
        moving = prepared.plan.version_from not in (None, instance.version.version)
        wait_healthy(
            kube,
            instance.namespace,
            health_workloads(instance, prepared.objects),
            instance.version.version,
            instance.app.health.timeout,
            reporter,
            CRASHES_DURING_UPGRADE if moving else CRASHES_BEFORE_GIVING_UP,
        )
    finally:
        # Ready, failed or interrupted: the Job has its pods' environment already, or will
        # never run again (a completed Job makes no new pod).
        for secret in transient:
            kube.delete("v1", "Secret", secret["metadata"]["name"], instance.namespace)


def transient_secrets(prepared: Prepared) -> list[Manifest]:
    """The provisioning Secrets (the shared PostgreSQL admin) of the Jobs this apply makes or
    makes anew; none when their Job is unchanged (it does not run again). They are not in
    the rendered objects, so the plan and the prune never see them."""
    running = {
        change.ref[2]
        for change in prepared.plan.changes
        if change.ref[1] == "Job" and change.action in ("create", "update")
    }
    return [
        secret
        for secret in provisioning_secrets(prepared.instance)
        if secret["metadata"]["annotations"][FOR_JOB] in running
    ]


def _owned_by_their_jobs(kube: KubeClient, secrets: list[Manifest]) -> None:
    """Each transient Secret owned by its Job: if libresh stops before deleting it, the
    garbage collector does when the Job goes (ttl or uninstall)."""
    for secret in secrets:
        namespace = secret["metadata"]["namespace"]
        job = kube.get("batch/v1", "Job", secret["metadata"]["annotations"][FOR_JOB], namespace)
        if job is not None:
            owned = copy.deepcopy(secret)
            owned["metadata"]["ownerReferences"] = [owner_reference(job)]
            kube.apply(owned)


def owner_reference(owner: Manifest) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    }


def prune(kube: KubeClient, prepared: Prepared) -> None:
    for change in reversed(prepared.plan.changes):
        if change.action == "prune":
            api_version, kind, name = change.ref
            kube.delete(api_version, kind, name, prepared.instance.namespace)


def install(kube: KubeClient, prepared: Prepared, reporter: Reporter) -> InstanceRecord:
    provision(kube, prepared)  # the OIDC client first: its secret goes into libresh-oidc
    instance = prepared.instance
    first_time = (
        prepared.record is None
        or prepared.record.status == Status.UNINSTALLED
        or (never_installed(prepared.record))
    )
    record = _record_for(prepared)
    kube.apply(prepared.objects[0])  # the namespace, so the record can be written first
    save_record(kube, record)  # a crash from here on leaves a record to resume from
    try:
        apply_and_wait(kube, prepared, reporter)
        if first_time:
            hooks.run_hooks(kube, "post_install", instance, prepared.objects, reporter)
        elif prepared.plan.settings:
            # The app's own steps for new settings (its domain...), with the new version of
            # its objects running.
            hooks.run_hooks(kube, "post_change", instance, prepared.objects, reporter)
    except Exception as error:
        record.status, record.last_error = Status.FAILED, str(error)
        record.add_history(
            HistoryEntry(Action.INSTALL, None, instance.version.version, Result.FAILED, str(error))
        )
        save_record(kube, record)
        raise
    record.status, record.last_error = Status.INSTALLED, None
    record.add_history(
        HistoryEntry(
            Action.INSTALL, prepared.plan.version_from, instance.version.version, Result.OK
        )
    )
    save_record(kube, record)
    for warning in unserved_ingresses(kube, prepared.objects):
        reporter.warn(warning)
    if prepared.catalog is not None:
        # The instances it uses, and those it used before, allow its domain or no longer do.
        before = set(prepared.record.uses.values()) if prepared.record else set()
        links.rewire(kube, prepared.catalog, before | set(instance.uses.values()), reporter)
    if instance.app.requires_mail and not instance.mail:
        reporter.warn(no_relay_warning(instance.name, instance.app))
    return record


def _record_for(prepared: Prepared) -> InstanceRecord:
    instance = prepared.instance
    previous = prepared.record
    return InstanceRecord(
        name=instance.name,
        app=instance.app.name,
        version=instance.version.version,
        params=dict(instance.params),
        secret_keys=sorted(instance.secret_values),
        inventory=refs_of(prepared.objects),
        status=Status.INSTALLING,
        history=list(previous.history) if previous else [],
        services={kind: instance.provider(kind) for kind in instance.app.requires},
        uses=instance.uses,
        resource_version=previous.resource_version if previous else None,
    )
