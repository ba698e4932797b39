"""HedgeDoc, Listmonk and Forgejo on the lab, each through the `libresh` command as people run
it: install at the older version, install again (nothing to do), upgrade along the path (a
backup first), back up, restore, uninstall (data kept). kwok runs no containers: this checks
libresh's side (objects, Secrets, health, the backup runner's Jobs); what the images do is in
each apps/APP/NOTES.md, and its "Known limits" says what was not run."""

from __future__ import annotations

import json
import os
import subprocess
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
from tests.integration.postgres import running_postgres
from tests.integration.test_apps import install, libresh, ok
from tests.integration.test_backup_lab import runner_jobs, storage
from tests.unit.test_more_apps_templates import pod_of, render_app

__all__ = ["storage"]  # the backup storage fixture of test_backup_lab, used here as is


@dataclass(frozen=True)
class Expected:
    app: str
    deployment: str
    claims: frozenset[str]  # the app's own PersistentVolumeClaims (with the database's)
    credentials: frozenset[str]  # keys of libresh-credentials


EXPECTED = [
    Expected(
        "hedgedoc",
        "hedgedoc",
        frozenset({"hedgedoc-uploads", "data-postgres-0"}),
        frozenset({"session_secret", "postgres_password", "postgres_superuser_password"}),
    ),
    Expected(
        "listmonk",
        "listmonk",
        frozenset({"listmonk-uploads", "data-postgres-0"}),
        frozenset({"admin_password", "postgres_password", "postgres_superuser_password"}),
    ),
]


@pytest.fixture
def name(kube: KubeClient) -> Iterator[str]:
    instance = f"m{uuid.uuid4().hex[:8]}"
    yield instance
    kube.delete("v1", "Namespace", instance)


@pytest.mark.parametrize("expected", EXPECTED, ids=[e.app for e in EXPECTED])
def test_install_again_upgrade_backup_restore_uninstall(
    lab: Lab, kube: KubeClient, storage: str, name: str, expected: Expected
) -> None:
    app = load_app(builtin_catalog() / expected.app)
    oldest, newest = app.versions[0], app.latest
    domain = f"{name}.example.org"

    installed = ok(install(lab, expected.app, name, domain, "--version", oldest.version))
    assert f"{name} is installed and healthy at https://{domain}" in installed.stderr
    api = lab.official_client()
    apps, core = k8s.AppsV1Api(api), k8s.CoreV1Api(api)
    deployment = apps.read_namespaced_deployment_status(expected.deployment, name)
    assert deployment.status.available_replicas == 1
    assert deployment.spec.template.spec.containers[0].image == oldest.image
    assert apps.read_namespaced_stateful_set_status("postgres", name).status.ready_replicas == 1
    claims = {
        c.metadata.name: c.status.phase
        for c in core.list_namespaced_persistent_volume_claim(name).items
    }
    assert claims == dict.fromkeys(expected.claims, "Bound")
    assert set(core.read_namespaced_secret("libresh-credentials", name).data) == set(
        expected.credentials
    )
    namespace = core.read_namespace(name)
    assert namespace.metadata.labels["pod-security.kubernetes.io/enforce"] == "baseline"
    ingress = k8s.NetworkingV1Api(api).read_namespaced_ingress(expected.app, name)
    assert ingress.spec.rules[0].host == domain

    again = ok(install(lab, expected.app, name, domain))
    assert "is up to date: nothing to do" in again.stderr

    # Along the path, with the backup libresh takes before each step.
    done = json.loads(ok(libresh(lab, "upgrade", name, "--yes", "-o", "json")).stdout)
    assert done[0]["result"] == "upgraded" and done[0]["to"] == newest.version
    deployment = apps.read_namespaced_deployment_status(expected.deployment, name)
    assert deployment.spec.template.spec.containers[0].image == newest.image
    assert deployment.status.available_replicas == 1
    (before_upgrade,) = runner_jobs(kube, name, "backup")
    runner_env = {
        e["name"]: e.get("value")
        for e in before_upgrade["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert runner_env["LIBRESH_DATABASES"] == ",".join(app.backup_databases)
    assert runner_env["LIBRESH_VOLUMES"] == ",".join(app.backup_volumes)

    taken = json.loads(ok(libresh(lab, "backup", name, "-o", "json")).stdout)
    assert taken["instance"] == name and taken["version"] == newest.version

    restored = json.loads(ok(libresh(lab, "restore", name, "--yes", "-o", "json")).stdout)
    assert restored["backup"] == f"lab-{name}" and restored["safety_backup"]
    (restore,) = runner_jobs(kube, name, "restore")
    restore_env = {
        e["name"]: e.get("value")
        for e in restore["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert restore_env["LIBRESH_VERSION"] == newest.version
    deployment = apps.read_namespaced_deployment_status(expected.deployment, name)
    assert deployment.spec.replicas == 1 and deployment.status.available_replicas == 1
    record = read_record(kube, name)
    assert record is not None and record.version == newest.version
    assert [(h.action, h.result) for h in record.history][-1] == ("restore", "ok")

    ok(libresh(lab, "uninstall", name, "--yes"))
    assert not apps.list_namespaced_deployment(name).items
    kept = {c.metadata.name for c in core.list_namespaced_persistent_volume_claim(name).items}
    assert expected.claims <= kept  # data stays unless --purge-data (and the backups' claim)
    record = read_record(kube, name)
    assert record is not None and record.status == "uninstalled"


# listmonk's settings table and the row of its public URL, as schema.sql (v5.1.0, v6.2.0)
# makes them; and its first statement, which libresh's role must be allowed to run.
LISTMONK_SCHEMA = """
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE TABLE settings (
    key             TEXT NOT NULL UNIQUE,
    value           JSONB NOT NULL DEFAULT '{}',
    updated_at      TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);
INSERT INTO settings (key, value) VALUES
    ('app.root_url', '"http://localhost:9000"'),
    ('app.site_name', '"Mailing list"');
"""


def test_listmonk_root_url_step_on_a_real_postgresql() -> None:
    """The root-url init container's script, as rendered, run by sh against a real
    PostgreSQL with listmonk's settings table, as a role like libresh's (owner of its
    database, not superuser): pgcrypto is trusted, the URL lands as a JSON string, again."""
    pod = pod_of(render_app("listmonk", domain="news.example.org"), "listmonk")
    step = next(c for c in pod["initContainers"] if c["name"] == "root-url")
    with running_postgres() as server:
        server.admin_sql("CREATE ROLE lm LOGIN PASSWORD 'pw-1_x' NOCREATEROLE NOCREATEDB")
        server.admin_sql("CREATE DATABASE lm OWNER lm")
        made = server.psql_tcp("lm", "pw-1_x", "lm", LISTMONK_SCHEMA)
        assert made.returncode == 0, made.stderr
        uri = f"postgresql://lm:pw-1_x@127.0.0.1:{server.port}/lm?sslmode=disable"
        env = {
            "PATH": f"{server.bindir}:{os.environ['PATH']}",
            "PG_URI": uri,
            "ROOT_URL": "https://news.example.org",
        }
        for _ in range(2):  # every start runs it
            ran = subprocess.run(
                step["command"], env=env, capture_output=True, text=True, timeout=60, check=False
            )
            assert ran.returncode == 0, ran.stderr
        rows = server.admin_sql(
            "SELECT key, value::text FROM settings ORDER BY key", database="lm"
        ).splitlines()
        assert rows == ['app.root_url|"https://news.example.org"', 'app.site_name|"Mailing list"']
