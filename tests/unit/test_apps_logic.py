"""Planning, parameters and rendering of apps: pure functions."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from libresh_cli.apps.catalog import builtin_catalog
from libresh_cli.apps.hooks import hook_job
from libresh_cli.apps.instance import APP_VERSION, INSTANCE, MANAGED_BY, Instance
from libresh_cli.apps.model import Parameter, Version
from libresh_cli.apps.params import GivenValues, parse_set_options, resolve, validate_instance_name
from libresh_cli.apps.plan import compare, upgrade_path
from libresh_cli.apps.render import generated_secret_keys, render
from libresh_cli.apps.schema import load_app
from libresh_cli.errors import BadInputError, NotFoundError

NEXTCLOUD = load_app(builtin_catalog() / "nextcloud")
VAULTWARDEN = load_app(builtin_catalog() / "vaultwarden")
DEMO = load_app(Path(__file__).resolve().parents[1] / "fixtures" / "catalog" / "demo")


def _versions(path: list[Version]) -> list[str]:
    return [v.version for v in path]


def test_upgrade_path_visits_every_major() -> None:
    every_major = ["30.0.17", "31.0.14", "32.0.13", "33.0.7", "34.0.2"]
    assert _versions(upgrade_path(NEXTCLOUD, "29.0.16")) == every_major
    # an instance on an older release of its major goes to that major's newest first
    assert _versions(upgrade_path(NEXTCLOUD, "30.0.12")) == every_major
    assert _versions(upgrade_path(NEXTCLOUD, "29.0.16", "30.0.12")) == ["30.0.12"]
    assert upgrade_path(NEXTCLOUD, "34.0.2") == []
    # The newest release of the current major first, as Nextcloud requires (latest 29.x
    # before 30), then each major.
    assert _versions(upgrade_path(DEMO, "1.0.0", "3.0.0")) == ["1.1.0", "2.0.0", "3.0.0"]
    assert _versions(upgrade_path(DEMO, "1.0.0", "1.1.0")) == ["1.1.0"]


def test_upgrade_path_jumps_when_the_app_allows() -> None:
    assert _versions(upgrade_path(VAULTWARDEN, "1.32.7")) == ["1.37.2"]


def test_upgrade_path_refuses_downgrades_and_unknown_versions() -> None:
    with pytest.raises(BadInputError, match=r"does not downgrade"):
        upgrade_path(NEXTCLOUD, "31.0.6", "29.0.16")
    with pytest.raises(NotFoundError, match=r"no version 99\.0\.0"):
        upgrade_path(NEXTCLOUD, "29.0.16", "99.0.0")


def test_compare_marks_creates_updates_prunes_and_keeps() -> None:
    live_cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "a", "resourceVersion": "9", "managedFields": []},
        "data": {"x": "1"},
    }
    same = {**live_cm, "metadata": {"name": "a", "resourceVersion": "10"}}
    changed = {**live_cm, "data": {"x": "2"}}
    refs = [("v1", "ConfigMap", "a"), ("v1", "ConfigMap", "b")]
    old = [("v1", "ConfigMap", "gone"), ("v1", "PersistentVolumeClaim", "data")]
    changes = compare(refs, {refs[0]: live_cm, refs[1]: None}, {refs[0]: same}, old)
    assert [c.action for c in changes] == ["unchanged", "create", "prune", "keep"]
    changes = compare(refs[:1], {refs[0]: live_cm}, {refs[0]: changed}, [])
    assert [c.action for c in changes] == ["update"]


def test_parameters_from_flags_files_defaults_and_previous() -> None:
    given = parse_set_options(["admin_user=ada"], GivenValues())
    given.add("domain", "Cloud.Example.org", "--domain")
    plain, secret = resolve(NEXTCLOUD, given)
    assert plain["domain"] == "cloud.example.org" and plain["admin_user"] == "ada"
    assert plain["max_upload_size"] == "10Gi"  # default, in the units storage_size uses
    assert "admin_password" not in plain and secret == {}  # generated later, kept secret
    again, _ = resolve(NEXTCLOUD, GivenValues(), previous=plain)
    assert again == plain  # a re-run keeps the values given the first time


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["domain=not a domain"], "is not valid for domain"),
        (["domain=a.org", "colour=blue"], "has no parameter 'colour'"),
        (["domain=a.org", "max_upload_size=lots"], "must match"),
        (["domain=a.org", "admin_password=hunter2"], "never taken from the command line"),
        (["domain"], "is not KEY=VALUE"),
    ],
)
def test_bad_parameters_name_where_they_came_from(options: list[str], message: str) -> None:
    with pytest.raises(BadInputError, match=message) as raised:
        resolve(NEXTCLOUD, parse_set_options(options, GivenValues()))
    assert "hunter2" not in str(raised.value)


def test_a_missing_value_names_its_flag_when_nobody_can_be_asked() -> None:
    with pytest.raises(BadInputError, match="No value for domain") as raised:
        resolve(NEXTCLOUD, GivenValues(), ask=None)
    assert "--domain" in str(raised.value.hint)


def test_missing_values_are_asked_for() -> None:
    asked = []

    def ask(parameter: Parameter) -> str:
        asked.append(parameter.name)
        return "pw.example.org"

    plain, _ = resolve(VAULTWARDEN, GivenValues(), ask=ask)
    assert asked == ["domain"] and plain["domain"] == "pw.example.org"


@pytest.mark.parametrize("name", ["Nextcloud", "kube-system", "a_b", "-x", "x" * 41])
def test_invalid_instance_names(name: str) -> None:
    with pytest.raises(BadInputError):
        validate_instance_name(name)


def _nextcloud(version: str = "31.0.6") -> Instance:
    secrets = {k: "s3cr3t-" + k for k in generated_secret_keys(NEXTCLOUD)}
    chosen = NEXTCLOUD.version(version)
    assert chosen is not None
    params = {
        "domain": "cloud.example.org",
        "admin_user": "admin",
        "max_upload_size": "10G",
        "storage_size": "50Gi",
    }
    return Instance("office", NEXTCLOUD, chosen, params, secrets)


def test_rendered_objects_are_labelled_namespaced_and_guarded() -> None:
    objects = render(_nextcloud())
    assert objects[0]["kind"] == "Namespace" and objects[0]["metadata"]["name"] == "office"
    assert objects[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    for manifest in objects[1:]:
        assert manifest["metadata"]["namespace"] == "office"
        labels = manifest["metadata"]["labels"]
        assert labels[MANAGED_BY] == "libresh" and labels[INSTANCE] == "office"
        assert labels[APP_VERSION] == "31.0.6"
    deployment = next(
        o for o in objects if o["metadata"]["name"] == "nextcloud" and o["kind"] == "Deployment"
    )
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"][APP_VERSION] == "31.0.6"
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["containers"][0]["image"] == "docker.io/library/nextcloud:31.0.6-apache"
    ingress = next(o for o in objects if o["kind"] == "Ingress")
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]
    assert ingress["spec"]["rules"][0]["host"] == "cloud.example.org"
    policy = next(o for o in objects if o["kind"] == "NetworkPolicy")
    assert policy["spec"]["podSelector"] == {} and policy["spec"]["policyTypes"] == ["Ingress"]


def test_secret_values_only_in_secrets() -> None:
    objects = render(_nextcloud())
    for manifest in objects:
        text = str(manifest)
        if manifest["kind"] != "Secret":
            assert "s3cr3t" not in text
    postgres = next(o for o in objects if o["metadata"]["name"] == "libresh-postgres")
    decoded = {k: base64.b64decode(v).decode() for k, v in postgres["data"].items()}
    assert set(decoded) == {"host", "port", "database", "username", "password", "uri"}
    assert decoded["password"] == "s3cr3t-postgres_password"
    assert decoded["uri"].startswith("postgresql://nextcloud:")


def test_hook_jobs_come_from_the_main_workload_with_their_own_command() -> None:
    instance = _nextcloud("30.0.12")
    step = NEXTCLOUD.hooks["post_upgrade"][0]
    job = hook_job("post_upgrade", step, instance, render(instance), sequence=7)
    assert job["metadata"]["name"] == "hook-post-upgrade-add-missing-indices-30-0-12"
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == list(step.command)
    assert container["image"].endswith(":30.0.12-apache")
    assert container["securityContext"]["runAsUser"] == 33
    assert "readinessProbe" not in container and pod["restartPolicy"] == "Never"
    assert "startupProbe" not in container and "livenessProbe" not in container
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "nextcloud-data"
    # not behind the app's Service: the workload's selector labels are not copied
    assert "app.kubernetes.io/component" not in job["spec"]["template"]["metadata"]["labels"]
