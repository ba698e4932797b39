"""The apps' side of single sign-on: the OIDC client of an instance whose app requires oidc.

Planning only reads (the provider must be connected, the allowed groups must exist, the
client's current secret if it exists); `provision` makes the client as wanted right before
the objects are applied, and puts its secret into the connection Secret libresh-oidc;
uninstall removes the client; `rotate` gives it a new secret. An instance installed before
keeps working while the provider is down: upgrades, restores and backups read the values
from its own connection Secret, never from the provider.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from libresh_cli.apps.model import ALLOWED_GROUPS, App
from libresh_cli.apps.render import OIDC_SECRET
from libresh_cli.errors import BadInputError, LibreshError, NotFoundError
from libresh_cli.identity import oidc
from libresh_cli.identity.connection import administer, load, require
from libresh_cli.kube.client import KubeClient
from libresh_cli.kube.store import read_secret, secret_manifest
from libresh_cli.progress import Reporter, SilentReporter

if TYPE_CHECKING:
    from libresh_cli.apps.lifecycle import Prepared


def client_spec(app: App, name: str, params: Mapping[str, Any]) -> oidc.ClientSpec:
    if app.oidc is None:
        raise BadInputError(
            f"{app.name} does not support single sign-on (its app.yaml has no requires.oidc)."
        )
    domain = params.get("domain")
    if not domain:
        raise BadInputError(
            f"{app.name} signs people in with the identity provider, which sends them back to "
            "the app's domain: it needs one.",
            hint="Give it with --domain.",
        )
    groups = str(params.get(ALLOWED_GROUPS) or "admins,members")
    return oidc.ClientSpec(
        client_id=name,
        base_url=f"https://{domain}",
        redirect_paths=app.oidc.redirect_paths,
        scopes=app.oidc.scopes,
        groups_claim=app.oidc.groups_claim,
        allowed_groups=tuple(g for g in groups.split(",") if g),
    )


def planned_oidc(
    kube: KubeClient, app: App, name: str, params: Mapping[str, Any]
) -> dict[str, str]:
    """The connection values an install will give (the client's secret as it is now, or
    empty for a client not made yet), checking what would stop the install: no provider,
    no domain, allowed groups that do not exist. Changes nothing."""
    if app.oidc is None or not app.oidc.wanted(params):
        return {}
    require(kube)
    spec = client_spec(app, name, params)
    with administer(kube) as admin:
        oidc.check_allowed_groups(admin, spec.allowed_groups)
        found = oidc.find_client(admin, name)
        secret = oidc.client_secret(admin, str(found["id"])) if found else ""
        return oidc.connection_values(admin, spec, secret)


def kept_oidc(kube: KubeClient, app: App, name: str) -> dict[str, str]:
    """The values an installed instance was given, from its own connection Secret."""
    if app.oidc is None:
        return {}
    return read_secret(kube, OIDC_SECRET, name)


def provision(kube: KubeClient, prepared: Prepared) -> None:
    """Makes the client as wanted (idempotent) and, if its values changed (a new client, a
    new secret), puts them into the prepared connection Secret before it is applied."""
    instance = prepared.instance
    if instance.app.oidc is None:
        return
    if not instance.app.oidc.wanted(instance.params):
        # Turned off (optional single sign-on): the client goes with its Secret, which the
        # apply prunes.
        if read_secret(kube, OIDC_SECRET, instance.name):
            forget(kube, instance.name, SilentReporter())
        return
    spec = client_spec(instance.app, instance.name, instance.params)
    with administer(kube) as admin:
        values = oidc.ensure_client(admin, spec)
    if values == dict(instance.oidc):
        return
    prepared.instance = replace(instance, oidc=values)
    wanted = secret_manifest(OIDC_SECRET, None, values)["data"]
    for manifest in prepared.objects:
        if manifest["kind"] == "Secret" and manifest["metadata"]["name"] == OIDC_SECRET:
            manifest["data"] = wanted


def forget(kube: KubeClient, name: str, reporter: Reporter) -> None:
    """Removes an uninstalled instance's client, if the provider has one by its name; a
    provider that cannot be reached is a warning (the client can be removed later by
    uninstalling again), never a failed uninstall."""
    if load(kube) is None:
        return
    try:
        with administer(kube) as admin:
            if oidc.remove_client(admin, name):
                reporter.done(f"Removed {name}'s OIDC client from the identity provider")
    except LibreshError as error:
        reporter.warn(f"Could not remove {name}'s OIDC client: {error.message}")


def check_rotatable(kube: KubeClient, name: str, app: App) -> dict[str, str]:
    """The instance's connection values; an error when it has no OIDC client to rotate."""
    if app.oidc is None:
        raise BadInputError(
            f"{name} runs {app.name}, which does not sign in with the identity provider: it "
            "has no OIDC client.",
            hint="See which apps do: libresh catalog list (column SSO).",
        )
    current = read_secret(kube, OIDC_SECRET, name)
    if not current:
        raise NotFoundError(
            f"{name} has no connection Secret {OIDC_SECRET}.",
            hint=f"Install it again to make its client: libresh install {app.name} --name {name}",
        )
    return current


def rotate(kube: KubeClient, name: str, app: App) -> list[str]:
    """A new client secret at the provider, then in the instance's connection Secret; the
    pods that read it are restarted (an environment variable is read at start). Returns
    the names of the Deployments restarted."""
    current = check_rotatable(kube, name, app)
    with administer(kube) as admin:
        secret = oidc.rotate_secret(admin, name)
    manifest = secret_manifest(OIDC_SECRET, name, {**current, "client_secret": secret})
    found = kube.get("v1", "Secret", OIDC_SECRET, name)
    manifest["metadata"]["labels"] = dict((found or {}).get("metadata", {}).get("labels") or {})
    kube.apply(manifest)
    return restart_readers(kube, name)


def restart_readers(kube: KubeClient, namespace: str) -> list[str]:
    """Deletes the pods of the Deployments whose pods read libresh-oidc; their
    ReplicaSets make new ones, which read the new values."""
    restarted = []
    for deployment in kube.list("apps/v1", "Deployment", namespace):
        if f'"{OIDC_SECRET}"' not in json.dumps(deployment["spec"]["template"]):
            continue
        labels = deployment["spec"]["selector"].get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        for pod in kube.list("v1", "Pod", namespace, label_selector=selector):
            kube.delete("v1", "Pod", pod["metadata"]["name"], namespace)
        restarted.append(str(deployment["metadata"]["name"]))
    return restarted
