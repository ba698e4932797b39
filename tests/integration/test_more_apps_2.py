"""Synapse, Element, GoToSocial, Paperless-ngx, Vikunja and Keycloak on the lab, each through
the `libresh` command as people run it: install at the older version, install again (nothing to do),
upgrade along the path (a backup first), back up, restore, uninstall (data kept). kwok runs
no containers: this checks libresh's side (objects, Secrets, health, the backup runner's
Jobs); what the images do is in each apps/APP/NOTES.md, and its "Known limits" says what was
not run. One lab and one backup storage for the module; an instance (namespace) per app."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from kubernetes import client as k8s

from libresh_cli.apps.catalog import builtin_catalog
from libresh_cli.apps.record import read_record
from libresh_cli.apps.schema import load_app
from libresh_cli.kube.client import KubeClient
from tests.integration.conftest import Lab
from tests.integration.test_apps import install, libresh, ok
from tests.integration.test_backup_lab import runner_jobs, storage

__all__ = ["storage"]  # the backup storage fixture of test_backup_lab, used here as is

DATABASE = {"postgres_password", "postgres_superuser_password"}


@dataclass(frozen=True)
class Expected:
    app: str
    claims: frozenset[str]  # the app's own PersistentVolumeClaims (with the database's)
    credentials: frozenset[str]  # keys of libresh-credentials
    settings: tuple[str, ...] = ()  # --set options the app needs


EXPECTED = [
    Expected(
        "synapse",
        frozenset({"synapse-data", "data-postgres-0"}),
        frozenset({"macaroon_secret_key", "form_secret", "registration_shared_secret"} | DATABASE),
        ("--set", "server_name=example.org"),
    ),
    Expected(
        "element",
        frozenset(),
        frozenset(),
        ("--set", "homeserver_url=https://matrix.example.org", "--set", "server_name=example.org"),
    ),
    Expected(
        "gotosocial",
        frozenset({"gotosocial-storage", "data-postgres-0"}),
        frozenset(DATABASE),
    ),
    Expected(
        "paperless",
        frozenset({"paperless-data", "paperless-media", "paperless-consume", "data-postgres-0"}),
        frozenset({"admin_password", "secret_key", "redis_password"} | DATABASE),
    ),
    Expected(
        "vikunja", frozenset({"vikunja-files", "data-postgres-0"}), frozenset({"secret"} | DATABASE)
    ),
    Expected("keycloak", frozenset({"data-postgres-0"}), frozenset({"admin_password"} | DATABASE)),
]


@pytest.fixture
def name(kube: KubeClient) -> Iterator[str]:
    instance = f"h{uuid.uuid4().hex[:8]}"
    yield instance
    kube.delete("v1", "Namespace", instance)


@pytest.mark.parametrize("expected", EXPECTED, ids=[e.app for e in EXPECTED])
def test_install_again_upgrade_backup_restore_uninstall(
    lab: Lab, kube: KubeClient, storage: str, name: str, expected: Expected
) -> None:
    app = load_app(builtin_catalog() / expected.app)
    oldest, newest = app.versions[0], app.latest
    domain = f"{name}.example.org"

    installed = ok(
        install(lab, expected.app, name, domain, "--version", oldest.version, *expected.settings)
    )
    assert f"{name} is installed and healthy at https://{domain}" in installed.stderr
    api = lab.official_client()
    apps, core = k8s.AppsV1Api(api), k8s.CoreV1Api(api)
    deployment = apps.read_namespaced_deployment_status(expected.app, name)
    assert deployment.status.available_replicas == 1
    assert deployment.spec.template.spec.containers[0].image == oldest.image
    claims = {
        c.metadata.name: c.status.phase
        for c in core.list_namespaced_persistent_volume_claim(name).items
    }
    assert claims == dict.fromkeys(expected.claims, "Bound")
    credentials = core.read_namespaced_secret("libresh-credentials", name).data or {}
    assert set(credentials) == set(expected.credentials)
    ingress = k8s.NetworkingV1Api(api).read_namespaced_ingress(expected.app, name)
    assert ingress.spec.rules[0].host == domain

    again = ok(install(lab, expected.app, name, domain))
    assert "is up to date: nothing to do" in again.stderr

    # Along the path, with the backup libresh takes before each step.
    done = json.loads(ok(libresh(lab, "upgrade", name, "--yes", "-o", "json")).stdout)
    assert [step["result"] for step in done] == ["upgraded"] and done[-1]["to"] == newest.version
    deployment = apps.read_namespaced_deployment_status(expected.app, name)
    assert deployment.spec.template.spec.containers[0].image == newest.image
    assert deployment.status.available_replicas == 1
    (before_upgrade,) = runner_jobs(kube, name, "backup")
    runner_env = {
        e["name"]: e.get("value")
        for e in before_upgrade["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    # The runner's lists: databases by commas, volumes by spaces.
    assert (runner_env.get("LIBRESH_DATABASES") or "") == ",".join(app.backup_databases)
    assert (runner_env.get("LIBRESH_VOLUMES") or "").split() == list(app.backup_volumes)

    taken = json.loads(ok(libresh(lab, "backup", name, "-o", "json")).stdout)
    assert taken["instance"] == name and taken["version"] == newest.version

    restored = json.loads(ok(libresh(lab, "restore", name, "--yes", "-o", "json")).stdout)
    assert restored["backup"] == f"lab-{name}" and restored["safety_backup"]
    deployment = apps.read_namespaced_deployment_status(expected.app, name)
    assert deployment.spec.replicas == 1 and deployment.status.available_replicas == 1
    record = read_record(kube, name)
    assert record is not None and record.version == newest.version
    assert [(h.action, h.result) for h in record.history][-1] == ("restore", "ok")

    ok(libresh(lab, "uninstall", name, "--yes"))
    assert not apps.list_namespaced_deployment(name).items
    kept = {c.metadata.name for c in core.list_namespaced_persistent_volume_claim(name).items}
    assert expected.claims <= kept  # data stays unless --purge-data
    record = read_record(kube, name)
    assert record is not None and record.status == "uninstalled"


def test_synapse_server_name_stays_and_delegation_is_routed(
    lab: Lab, kube: KubeClient, name: str
) -> None:
    """The server name is in every ID Synapse stores: a second install with another one is
    refused before anything changes; the delegation Ingress serves the server name's domain."""
    domain = f"{name}.example.org"
    ok(install(lab, "synapse", name, domain, "--set", "server_name=example.org"))
    networking = k8s.NetworkingV1Api(lab.official_client())
    delegation = networking.read_namespaced_ingress("synapse-delegation", name)
    assert [r.host for r in delegation.spec.rules] == ["example.org"]
    refused = install(lab, "synapse", name, domain, "--set", "server_name=example.net")
    assert refused.returncode == 2, refused.stderr
    assert "server_name cannot change once the instance is installed" in refused.stderr
    assert "'example.org'" in refused.stderr
    record = read_record(kube, name)
    assert record is not None and record.params["server_name"] == "example.org"
