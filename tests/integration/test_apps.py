"""Apps on the lab's real API server: install, re-run, upgrade, prune, rollback, list, status,
diff, uninstall; through the `libresh` command as people and cron run it, and read back with
the official kubernetes client."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from libresh_cli.apps.catalog import Catalog
from libresh_cli.apps.inventory import list_instances
from libresh_cli.apps.lifecycle import install as install_prepared
from libresh_cli.apps.lifecycle import plan_install
from libresh_cli.apps.params import GivenValues
from libresh_cli.apps.record import read_record, save_record
from libresh_cli.errors import ExitCode
from libresh_cli.kube.client import KubeClient
from libresh_cli.progress import SilentReporter
from tests.integration.conftest import Lab

LIBRESH = str(Path(sys.executable).parent / "libresh")
TEST_CATALOG = Path(__file__).resolve().parents[1] / "fixtures" / "catalog"


def libresh(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    command = [LIBRESH, "--kubeconfig", str(lab.kubeconfig), "--catalog", str(TEST_CATALOG), *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env={**lab.cli_env(), "COLUMNS": "200"},
    )


def install(
    lab: Lab, app: str, name: str, domain: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """`libresh install APP --name NAME --domain DOMAIN [EXTRA…] --yes`, as a script runs it."""
    return libresh(lab, "install", app, "--name", name, "--domain", domain, *extra, "--yes")


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def name(kube: KubeClient) -> Iterator[str]:
    """A fresh instance name; its namespace is deleted afterwards (without waiting: the purge
    itself is tested in test_uninstall_keeps_data_unless_purged)."""
    instance = f"t{uuid.uuid4().hex[:8]}"
    yield instance
    kube.delete("v1", "Namespace", instance)


def test_install_nextcloud_then_nothing_to_do(lab: Lab, kube: KubeClient, name: str) -> None:
    result = ok(install(lab, "nextcloud", name, "cloud.example.org"))
    assert f"{name} is installed and healthy at https://cloud.example.org" in result.stderr
    assert f"libresh secret get {name} admin_password" in result.stderr

    api = lab.official_client()
    apps = k8s.AppsV1Api(api)
    deployment = apps.read_namespaced_deployment_status("nextcloud", name)
    assert deployment.status.available_replicas == 1
    assert deployment.spec.template.spec.containers[0].image.endswith(":34.0.2-apache")
    assert apps.read_namespaced_stateful_set_status("postgres", name).status.ready_replicas == 1
    assert apps.read_namespaced_deployment_status("redis", name).status.available_replicas == 1
    core = k8s.CoreV1Api(api)
    claims = {
        c.metadata.name: c.status.phase
        for c in core.list_namespaced_persistent_volume_claim(name).items
    }
    assert claims == {"nextcloud-data": "Bound", "data-postgres-0": "Bound"}
    assert k8s.BatchV1Api(api).read_namespaced_cron_job("nextcloud-cron", name).spec.schedule
    ingress = k8s.NetworkingV1Api(api).read_namespaced_ingress("nextcloud", name)
    assert ingress.spec.rules[0].host == "cloud.example.org"
    assert ingress.metadata.annotations["cert-manager.io/cluster-issuer"]
    namespace = core.read_namespace(name)
    assert namespace.metadata.labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert k8s.NetworkingV1Api(api).read_namespaced_network_policy("libresh-isolate", name)

    credentials = core.read_namespaced_secret("libresh-credentials", name).data
    assert set(credentials) == {
        "admin_password",
        "postgres_password",
        "postgres_superuser_password",
        "redis_password",
    }
    password = base64.b64decode(credentials["admin_password"]).decode()
    assert len(password) == 24
    shown = ok(libresh(lab, "secret", "get", name, "admin_password"))
    assert shown.stdout.strip() == password

    record = read_record(kube, name)
    assert record is not None and record.version == "34.0.2" and record.status == "installed"
    assert record.params["domain"] == "cloud.example.org"
    record_text = json.dumps(core.read_namespaced_config_map("libresh-instance", name).data)
    assert password not in record_text  # the record never holds secret values

    again = ok(install(lab, "nextcloud", name, "cloud.example.org"))
    assert "is up to date: nothing to do" in again.stderr
    listed = json.loads(ok(libresh(lab, "list", "-o", "json")).stdout)
    assert password not in json.dumps(listed)
    mine = next(i for i in listed if i["name"] == name)
    assert (mine["app"], mine["version"], mine["status"]) == ("nextcloud", "34.0.2", "installed")


def test_nextcloud_upgrade_steps_through_the_middle_major_with_hooks_in_order(
    lab: Lab, kube: KubeClient, name: str
) -> None:
    ok(install(lab, "nextcloud", name, "c.example.org", "--version", "32.0.13"))
    planned = json.loads(
        ok(libresh(lab, "upgrade", name, "--dry-run", "--no-backup", "-o", "json")).stdout
    )
    assert planned[0]["steps"] == ["32.0.13 -> 33.0.7", "33.0.7 -> 34.0.2"]
    assert read_record(kube, name).version == "32.0.13"

    done = json.loads(
        ok(libresh(lab, "upgrade", name, "--no-backup", "--yes", "-o", "json")).stdout
    )
    assert done[0]["result"] == "upgraded" and done[0]["to"] == "34.0.2"
    jobs = (
        k8s.BatchV1Api(lab.official_client())
        .list_namespaced_job(name, label_selector="libresh.dev/hook")
        .items
    )
    ordered = sorted(jobs, key=lambda j: int(j.metadata.annotations["libresh.dev/hook-sequence"]))
    # No `occ upgrade`: the new image's entrypoint migrates before it is healthy.
    # (office-link: no office server is linked, the step forgets richdocuments' wopi_url)
    assert [j.metadata.name for j in ordered] == [
        "hook-post-install-office-link-32-0-13",
        "hook-pre-upgrade-maintenance-on-32-0-13",
        "hook-post-upgrade-add-missing-indices-33-0-7",
        "hook-post-upgrade-maintenance-off-33-0-7",
        "hook-post-upgrade-office-link-33-0-7",
        "hook-pre-upgrade-maintenance-on-33-0-7",
        "hook-post-upgrade-add-missing-indices-34-0-2",
        "hook-post-upgrade-maintenance-off-34-0-2",
        "hook-post-upgrade-office-link-34-0-2",
    ]
    assert all(j.status.succeeded == 1 for j in jobs)
    # each hook ran with the image of the version it belongs to
    images = {j.metadata.name: j.spec.template.spec.containers[0].image for j in jobs}
    assert images["hook-pre-upgrade-maintenance-on-32-0-13"].endswith(":32.0.13-apache")
    assert images["hook-post-upgrade-maintenance-off-33-0-7"].endswith(":33.0.7-apache")
    record = read_record(kube, name)
    assert record is not None and record.version == "34.0.2"
    assert [(h.version_from, h.version_to, h.result) for h in record.history[-2:]] == [
        ("32.0.13", "33.0.7", "ok"),
        ("33.0.7", "34.0.2", "ok"),
    ]


def _configmaps(lab: Lab, namespace: str) -> set[str]:
    core = k8s.CoreV1Api(lab.official_client())
    return {str(c.metadata.name) for c in core.list_namespaced_config_map(namespace).items}


def test_a_version_that_drops_objects_prunes_them_but_keeps_data(lab: Lab, name: str) -> None:
    ok(install(lab, "demo", name, "d.example.org", "--version", "1.1.0"))
    assert "legacy" in _configmaps(lab, name)
    ok(libresh(lab, "upgrade", name, "--to", "2.0.0", "--no-backup", "--yes"))
    assert "legacy" not in _configmaps(lab, name)
    plan = json.loads(
        ok(
            libresh(lab, "upgrade", name, "--to", "3.0.0", "--dry-run", "--no-backup", "-o", "json")
        ).stdout
    )
    assert plan[0]["result"] == "would upgrade"
    ok(libresh(lab, "upgrade", name, "--to", "3.0.0", "--no-backup", "--yes"))
    claims = k8s.CoreV1Api(lab.official_client()).list_namespaced_persistent_volume_claim(name)
    assert [c.metadata.name for c in claims.items] == ["demo-data"]  # data is never pruned


def test_a_failing_upgrade_rolls_back_and_says_so(lab: Lab, kube: KubeClient, name: str) -> None:
    ok(install(lab, "demo", name, "d.example.org", "--version", "3.0.0"))
    failed = libresh(lab, "upgrade", name, "--to", "4.0.0", "--no-backup", "--yes", "-o", "json")
    assert failed.returncode == 1
    result = json.loads(failed.stdout)[0]
    assert result["result"] == "failed" and "CrashLoopBackOff" in result["message"]
    assert "rolled back to 3.0.0" in failed.stderr

    deployment = k8s.AppsV1Api(lab.official_client()).read_namespaced_deployment_status(
        "demo", name
    )
    assert deployment.spec.template.spec.containers[0].image == "example.org/demo:3.0.0"
    assert deployment.status.available_replicas == 1
    assert "new-in-4" not in _configmaps(lab, name)  # what the failed version added is gone
    record = read_record(kube, name)
    assert record is not None
    assert (record.version, record.status) == ("3.0.0", "installed")
    assert record.last_error is not None and "4.0.0" in record.last_error
    last = record.history[-1]
    assert (last.version_from, last.version_to, last.result) == ("3.0.0", "4.0.0", "rolled-back")
    undo = k8s.BatchV1Api(lab.official_client()).read_namespaced_job_status(
        "hook-rollback-undo-3-0-0", name
    )  # the rollback hook ran, with the old version
    assert undo.status.succeeded == 1
    assert undo.spec.template.spec.containers[0].image == "example.org/demo:3.0.0"
    status = json.loads(ok(libresh(lab, "status", name, "-o", "json")).stdout)
    assert status["last_error"] == record.last_error


def test_status_and_diff_exit_codes(lab: Lab, name: str) -> None:
    ok(install(lab, "demo", name, "d.example.org", "--version", "3.0.0"))
    status = json.loads(ok(libresh(lab, "status", name, "-o", "json")).stdout)
    assert status["version"] == "3.0.0" and status["upgrade"] == "4.0.0"
    assert {o["kind"] for o in status["objects"]} >= {"Deployment", "Service", "Namespace"}
    assert libresh(lab, "diff", name).returncode == 0
    k8s.AppsV1Api(lab.official_client()).patch_namespaced_deployment(
        "demo", name, {"spec": {"replicas": 3}}
    )  # a hand edit
    drift = libresh(lab, "diff", name, "-o", "json")
    assert drift.returncode == 1
    changes = json.loads(drift.stdout)["changes"]
    assert {
        "action": "update",
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "demo",
        "fields": ["spec.replicas: 3 -> 1"],
    } in changes
    assert libresh(lab, "status", "nope-nope").returncode == ExitCode.NOT_FOUND


def test_uninstall_keeps_data_unless_purged(lab: Lab, kube: KubeClient, name: str) -> None:
    ok(install(lab, "demo", name, "d.example.org", "--version", "1.0.0"))
    key = ok(libresh(lab, "secret", "get", name, "api_key")).stdout
    ok(libresh(lab, "uninstall", name, "--yes"))
    core = k8s.CoreV1Api(lab.official_client())
    assert [c.metadata.name for c in core.list_namespaced_persistent_volume_claim(name).items] == [
        "demo-data"
    ]
    assert not k8s.AppsV1Api(lab.official_client()).list_namespaced_deployment(name).items
    assert read_record(kube, name).status == "uninstalled"
    # installing again finds the data and the credentials it was made with
    ok(install(lab, "demo", name, "d.example.org", "--version", "1.0.0"))
    assert ok(libresh(lab, "secret", "get", name, "api_key")).stdout == key
    ok(libresh(lab, "uninstall", name, "--purge-data", "--yes"))
    assert kube.get("v1", "Namespace", name) is None


def test_list_costs_the_same_few_calls_whatever_the_number_of_instances(
    lab: Lab, kube: KubeClient
) -> None:
    catalog = Catalog.from_sources([TEST_CATALOG])
    names = [f"l{uuid.uuid4().hex[:6]}-{i}" for i in range(4)]

    def calls_for_list() -> int:
        before = kube.request_count
        list_instances(kube, catalog)
        return kube.request_count - before

    try:
        _install_demo(kube, catalog, names[0])
        with_one = calls_for_list()
        for extra in names[1:]:
            _install_demo(kube, catalog, extra)
        with_four = calls_for_list()
        assert with_one == with_four == 4  # records, Deployments, StatefulSets, pods
    finally:
        for instance in names:
            kube.delete("v1", "Namespace", instance)


def _install_demo(kube: KubeClient, catalog: Catalog, instance: str) -> None:
    given = GivenValues()
    given.add("domain", f"{instance}.example.org", "--domain")
    prepared = plan_install(kube, catalog, "demo", instance, given, "3.0.0", None)
    install_prepared(kube, prepared, SilentReporter())


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["install", "nextclod", "--domain", "a.example.org", "--yes"],
            ExitCode.NOT_FOUND,
            "Did you mean nextcloud",  # (keycloak is close too)
        ),
        (
            ["install", "demo", "--domain", "not_a_domain", "--yes"],
            ExitCode.BAD_INPUT,
            "--domain 'not_a_domain' is not a domain name",
        ),
        (
            ["install", "demo", "--name", "Bad_Name", "--domain", "a.example.org", "--yes"],
            ExitCode.BAD_INPUT,
            "is not a valid instance name",
        ),
        (
            ["install", "demo", "--name", "kube-system", "--domain", "a.example.org", "--yes"],
            ExitCode.BAD_INPUT,
            "is reserved",
        ),
        (["install", "demo", "--yes"], ExitCode.BAD_INPUT, "Give it with --domain"),
        (
            ["install", "demo", "--domain", "a.example.org", "--set", "api_key=x", "--yes"],
            ExitCode.BAD_INPUT,
            "never taken from the command line",
        ),
        (["install", "demo", "--domain", "a.example.org"], ExitCode.BAD_INPUT, "Pass --yes"),
        (["upgrade"], ExitCode.BAD_INPUT, "Name one instance or pass --all"),
    ],
)
def test_bad_input_is_refused_clearly(lab: Lab, args: list[str], code: int, message: str) -> None:
    result = libresh(lab, *args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_taken_name_and_a_foreign_namespace_are_refused(
    lab: Lab, kube: KubeClient, name: str
) -> None:
    ok(install(lab, "demo", name, "d.example.org", "--version", "3.0.0"))
    taken = install(lab, "vaultwarden", name, "v.example.org")
    assert taken.returncode == ExitCode.CONFLICT
    assert f"The name '{name}' is taken by an instance of demo" in taken.stderr
    foreign = f"f{uuid.uuid4().hex[:8]}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": foreign}})
    try:
        refused = install(lab, "demo", foreign, "d.example.org")
        assert refused.returncode == ExitCode.CONFLICT
        assert "libresh does not manage it" in refused.stderr
    finally:
        kube.delete("v1", "Namespace", foreign)


def test_an_unreachable_cluster_says_which_kubeconfig(lab: Lab, tmp_path: Path) -> None:
    import yaml

    document: dict[str, Any] = yaml.safe_load(lab.kubeconfig.read_text())
    document["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    moved = tmp_path / "kubeconfig"
    moved.write_text(yaml.safe_dump(document))
    result = subprocess.run(
        [LIBRESH, "--kubeconfig", str(moved), "list"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == ExitCode.UNREACHABLE
    assert "https://127.0.0.1:1" in result.stderr and str(moved) in result.stderr


def test_external_postgres_is_given_once_and_pinned_per_instance(
    lab: Lab, kube: KubeClient, tmp_path: Path
) -> None:
    password_file = tmp_path / "admin-password"
    password_file.write_text("adm1n-secret\n")
    password_file.chmod(0o600)
    external, embedded = f"x{uuid.uuid4().hex[:7]}", f"e{uuid.uuid4().hex[:7]}"
    try:
        ok(
            libresh(
                lab,
                "services",
                "set",
                "postgres",
                "--provider",
                "external",
                "--host",
                "db.example.org",
                "--password-file",
                str(password_file),
            )
        )
        shown = ok(libresh(lab, "services", "show", "-o", "json")).stdout
        assert "adm1n-secret" not in shown
        assert json.loads(shown)[0]["host"] == "db.example.org"
        ok(install(lab, "nextcloud", external, "x.example.org", "--version", "33.0.7"))
        batch = k8s.BatchV1Api(lab.official_client())
        assert batch.read_namespaced_job_status("postgres-provision", external).status.succeeded
        # The shared admin's password was there for the provisioning Job's run only.
        assert kube.get("v1", "Secret", "libresh-postgres-admin", external) is None
        core = k8s.CoreV1Api(lab.official_client())
        connection = core.read_namespaced_secret("libresh-postgres", external).data
        assert base64.b64decode(connection["host"]).decode() == "db.example.org"
        assert not k8s.AppsV1Api(lab.official_client()).list_namespaced_stateful_set(external).items
        assert read_record(kube, external).services == {
            "postgres": "external",
            "redis": "embedded",
        }
        # An upgrade changes the provisioning Job's pod template (the version label), which
        # the API refuses to apply to a Job (422): it is planned, made anew and run again.
        first_run = batch.read_namespaced_job("postgres-provision", external).metadata.uid
        ok(libresh(lab, "upgrade", external, "--to", "34.0.2", "--no-backup", "--yes"))
        job = batch.read_namespaced_job_status("postgres-provision", external)
        assert job.metadata.uid != first_run and job.status.succeeded
        assert job.spec.template.metadata.labels["app.kubernetes.io/version"] == "34.0.2"
        assert kube.get("v1", "Secret", "libresh-postgres-admin", external) is None
        assert read_record(kube, external).version == "34.0.2"

        ok(libresh(lab, "services", "set", "postgres", "--provider", "embedded"))
        assert libresh(lab, "diff", external).returncode == 0  # still on its external server
        ok(install(lab, "nextcloud", embedded, "e.example.org"))
        assert k8s.AppsV1Api(lab.official_client()).read_namespaced_stateful_set(
            "postgres", embedded
        )
    finally:
        kube.delete("v1", "Namespace", external)
        kube.delete("v1", "Namespace", embedded)
        kube.delete("v1", "Namespace", "libresh-system")


def test_vaultwarden_needs_no_database_and_takes_a_boolean(lab: Lab, name: str) -> None:
    ok(install(lab, "vaultwarden", name, "pw.example.org", "--set", "signups_allowed=yes"))
    api = lab.official_client()
    deployment = k8s.AppsV1Api(api).read_namespaced_deployment("vaultwarden", name)
    env = {e.name: e.value for e in deployment.spec.template.spec.containers[0].env}
    assert env["SIGNUPS_ALLOWED"] == "true" and env["DOMAIN"] == "https://pw.example.org"
    assert not k8s.AppsV1Api(api).list_namespaced_stateful_set(name).items
    token = ok(libresh(lab, "secret", "get", name, "admin_token")).stdout.strip()
    assert len(token) == 48


def test_a_failed_first_install_is_recorded_and_resumed(
    lab: Lab, kube: KubeClient, name: str
) -> None:
    failed = install(lab, "demo", name, "d.example.org")  # the newest demo release is broken
    assert failed.returncode == 1 and "CrashLoopBackOff" in failed.stderr
    record = read_record(kube, name)
    assert record is not None and record.status == "failed"
    shown = libresh(lab, "status", name, "-o", "json")
    assert shown.returncode == 1  # not healthy, though nothing of it should run yet
    status = json.loads(shown.stdout)
    assert status["status"] == "failed" and "CrashLoopBackOff" in status["last_error"]
    table = libresh(lab, "status", name).stdout
    assert f"then libresh install demo --name {name} again" in " ".join(table.split())
    # re-running is the fix: here with a working version
    ok(install(lab, "demo", name, "d.example.org", "--version", "3.0.0"))
    record = read_record(kube, name)
    assert record is not None and (record.status, record.version) == ("installed", "3.0.0")
    jobs = (
        k8s.BatchV1Api(lab.official_client())
        .list_namespaced_job(name, label_selector="libresh.dev/hook=post-install")
        .items
    )
    assert [j.metadata.name for j in jobs] == ["hook-post-install-welcome-3-0-0"]


def test_a_malformed_values_file_names_the_file(lab: Lab, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("domain: [unclosed\n")
    result = libresh(lab, "install", "demo", "-f", str(values), "--yes")
    assert result.returncode == ExitCode.BAD_INPUT
    assert f"the values file {values}, line 2, column 1" in result.stderr
    assert "[unclosed" not in result.stderr  # the file's text is never echoed (it may hold secrets)
    values.write_text("- a list\n")
    result = libresh(lab, "install", "demo", "-f", str(values), "--yes")
    assert result.returncode == ExitCode.BAD_INPUT
    assert "must be a mapping of parameter names to values" in result.stderr


def test_upgrade_all_goes_on_after_failures_and_reports_each(lab: Lab, kube: KubeClient) -> None:
    good, bad = f"g{uuid.uuid4().hex[:7]}", f"b{uuid.uuid4().hex[:7]}"
    try:
        ok(install(lab, "demo", good, "g.example.org", "--version", "2.0.0"))
        assert (
            install(lab, "demo", bad, "b.example.org").returncode == 1
        )  # the newest demo is broken: never installed
        result = libresh(lab, "upgrade", "--all", "--no-backup", "--yes", "-o", "json")
        assert result.returncode == 1
        rows = {r["instance"]: r for r in json.loads(result.stdout)}
        assert rows[bad]["result"] == "failed"
        assert "never installed completely" in rows[bad]["message"]
        # 2.0.0 -> 3.0.0 went through; 3.0.0 -> 4.0.0 (broken) was rolled back
        assert rows[good]["result"] == "failed" and rows[good]["steps"] == [
            "2.0.0 -> 3.0.0",
            "3.0.0 -> 4.0.0",
        ]
        record = read_record(kube, good)
        assert record is not None and (record.version, record.status) == ("3.0.0", "installed")
    finally:
        kube.delete("v1", "Namespace", good)
        kube.delete("v1", "Namespace", bad)


def test_an_interrupted_upgrade_is_finished_by_upgrade_not_install(
    lab: Lab, kube: KubeClient, name: str
) -> None:
    ok(install(lab, "demo", name, "d.example.org", "--version", "2.0.0"))
    record = read_record(kube, name)
    assert record is not None
    record.status = "upgrading"  # what a crash in the middle of `upgrade` leaves
    save_record(kube, record)
    refused = install(lab, "demo", name, "d.example.org")
    assert refused.returncode == ExitCode.CONFLICT
    assert f"libresh upgrade {name}" in refused.stderr
    ok(libresh(lab, "upgrade", name, "--to", "3.0.0", "--no-backup", "--yes"))
    record = read_record(kube, name)
    assert record is not None and (record.version, record.status) == ("3.0.0", "installed")


def test_one_broken_record_is_named_and_skipped_by_list_and_upgrade_all(
    lab: Lab, kube: KubeClient, name: str
) -> None:
    ok(install(lab, "demo", name, "d.example.org", "--version", "2.0.0"))
    broken = f"r{uuid.uuid4().hex[:7]}"
    try:
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": broken}})
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "libresh-instance",
                    "namespace": broken,
                    "labels": {"libresh.dev/record": "instance"},
                },
                "data": {"record.json": '{"name": "' + broken + '", "app": 7}'},
            }
        )
        listed = {r["name"]: r for r in json.loads(ok(libresh(lab, "list", "-o", "json")).stdout)}
        assert listed[broken]["status"] == "unreadable record"
        assert listed[name]["status"] == "installed"
        result = libresh(lab, "upgrade", "--all", "--no-backup", "--yes", "-o", "json")
        rows = {r["instance"]: r for r in json.loads(result.stdout)}
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert rows[broken]["result"] == "failed"
        assert f"The record of {broken}" in rows[broken]["message"]
        assert rows[name]["result"] == "failed"  # demo 4.0.0 is broken: rolled back, reported
        assert rows[name]["steps"][0] == "2.0.0 -> 3.0.0"
    finally:
        kube.delete("v1", "Namespace", broken)
