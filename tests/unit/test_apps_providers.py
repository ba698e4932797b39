"""Backing-service providers: defaults, pinning, and the external settings."""

from __future__ import annotations

import base64

import pytest

from libresh_cli.apps.catalog import builtin_catalog
from libresh_cli.apps.instance import Instance
from libresh_cli.apps.lifecycle import Prepared, transient_secrets
from libresh_cli.apps.plan import Change, Plan
from libresh_cli.apps.providers import (
    ExternalService,
    check_external,
    providers_for_new_instance,
    services_for,
)
from libresh_cli.apps.render import FOR_JOB, generated_secret_keys, provisioning_secrets, render
from libresh_cli.apps.schema import load_app
from libresh_cli.errors import BadInputError, OperationFailedError

NEXTCLOUD = load_app(builtin_catalog() / "nextcloud")
EXTERNAL_PG = {
    "provider": "embedded",
    "external": {
        "host": "db.example.org",
        "port": 5433,
        "admin_user": "admin",
        "sslmode": "verify-full",
    },
}


def test_new_instances_get_the_default_provider() -> None:
    assert providers_for_new_instance({}, ("postgres", "redis")) == {
        "postgres": "embedded",
        "redis": "embedded",
    }
    settings = {"postgres": {**EXTERNAL_PG, "provider": "external"}}
    assert providers_for_new_instance(settings, ("postgres",)) == {"postgres": "external"}


def test_a_pinned_external_instance_keeps_its_server_when_the_default_changes() -> None:
    services, secrets = services_for(
        {"postgres": "external", "redis": "embedded"},
        {"postgres": EXTERNAL_PG},
        {"postgres_admin_password": "adm"},
    )
    assert services["postgres"]["host"] == "db.example.org"
    assert services["redis"] == {"provider": "embedded"}
    assert secrets == {"postgres_admin_password": "adm"}


def test_missing_external_settings_are_a_clear_error() -> None:
    with pytest.raises(OperationFailedError, match="settings for it are gone"):
        services_for({"postgres": "external"}, {"postgres": {"provider": "embedded"}}, {})


@pytest.mark.parametrize(
    ("service", "message"),
    [
        (ExternalService("postgres", "bad host", 5432), "not a host name"),
        (ExternalService("postgres", "db.lan.example", 0), "out of range"),
        (ExternalService("postgres", "10.0.0.5", 5432, sslmode="sometimes"), "is not one of"),
        (ExternalService("mysql", "10.0.0.5", 3306), "not a backing service"),
    ],
)
def test_external_settings_are_checked(service: ExternalService, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        check_external(service)


def test_external_postgres_renders_a_provisioning_job_instead_of_a_server() -> None:
    services, service_secrets = services_for(
        {"postgres": "external", "redis": "embedded"},
        {"postgres": EXTERNAL_PG},
        {"postgres_admin_password": "adm-pw"},
    )
    secrets = {k: f"pw-{k}" for k in generated_secret_keys(NEXTCLOUD)}
    params = {
        "domain": "c.example.org",
        "admin_user": "admin",
        "max_upload_size": "1G",
        "storage_size": "1Gi",
    }
    instance = Instance(
        "office-a", NEXTCLOUD, NEXTCLOUD.latest, params, secrets, services, service_secrets
    )
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render(instance)}
    assert ("StatefulSet", "postgres") not in objects
    assert ("Deployment", "redis") in objects
    job = objects[("Job", "postgres-provision")]
    env = {
        e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["PGHOST"] == "db.example.org" and env["PGPORT"] == "5433"
    assert env["PGSSLMODE"] == "verify-full" and env["PGPASSWORD"] is None  # from a Secret
    connection = {
        k: base64.b64decode(v).decode()
        for k, v in objects[("Secret", "libresh-postgres")]["data"].items()
    }
    assert connection["database"] == connection["username"] == "libresh_office_a"
    assert connection["uri"].endswith("@db.example.org:5433/libresh_office_a?sslmode=verify-full")
    # The shared admin's password is no object of the instance: made for the Job's run only.
    assert ("Secret", "libresh-postgres-admin") not in objects
    (admin,) = provisioning_secrets(instance)
    assert admin["metadata"]["name"] == "libresh-postgres-admin"
    assert admin["metadata"]["namespace"] == "office-a"
    assert admin["metadata"]["annotations"] == {FOR_JOB: "postgres-provision"}
    assert base64.b64decode(admin["data"]["password"]).decode() == "adm-pw"
    assert objects[("ConfigMap", "libresh-postgres-provision")]["data"]["provision.sh"]


@pytest.mark.parametrize(
    ("job_action", "made"), [("create", True), ("update", True), ("unchanged", False)]
)
def test_the_admin_secret_is_made_only_for_a_provisioning_job_that_runs(
    job_action: str, made: bool
) -> None:
    services, service_secrets = services_for(
        {"postgres": "external", "redis": "embedded"},
        {"postgres": EXTERNAL_PG},
        {"postgres_admin_password": "adm-pw"},
    )
    secrets = {k: f"pw-{k}" for k in generated_secret_keys(NEXTCLOUD)}
    params = {"domain": "c.example.org", "admin_user": "admin"}
    instance = Instance(
        "office-a", NEXTCLOUD, NEXTCLOUD.latest, params, secrets, services, service_secrets
    )
    job = Change(("batch/v1", "Job", "postgres-provision"), job_action)
    plan = Plan("office-a", "nextcloud", None, NEXTCLOUD.latest.version, [job])
    transient = transient_secrets(Prepared(instance, [], plan, None))
    assert [s["metadata"]["name"] for s in transient] == (
        ["libresh-postgres-admin"] if made else []
    )
    embedded = Instance("office-b", NEXTCLOUD, NEXTCLOUD.latest, params, secrets, {}, {})
    assert provisioning_secrets(embedded) == []
