"""Backups, the pure parts: storage settings, the runner's manifests, results and listings."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from libresh_cli.apps.catalog import builtin_catalog
from libresh_cli.apps.schema import load_app
from libresh_cli.backup.jobs import (
    RUNNER_IMAGE,
    Retention,
    Target,
    job_name,
    runner_configmap,
    runner_job,
    schedule_cronjob,
)
from libresh_cli.backup.runner import parse_backups, parse_result, runner_script
from libresh_cli.backup.service import check_cron, find_backup
from libresh_cli.backup.storage import (
    BackupStorage,
    check_storage,
    instance_password,
    repository_env,
    repository_secret,
    repository_volume,
)
from libresh_cli.errors import BadInputError, NotFoundError

S3 = BackupStorage("s3", endpoint="https://s3.example.org/", bucket="coop-backups")
NODE = BackupStorage("path", path="/var/backups/libresh", node="node-1")


def nextcloud_target() -> Target:
    app = load_app(builtin_catalog() / "nextcloud")
    return Target.of("cloud", app, "30.0.12")


def test_the_runner_uses_the_postgres_image_of_the_embedded_service() -> None:
    # pg_dump must be of the server's major version, and the image is already on the node.
    embedded = Path(__file__).resolve().parents[2] / "libresh_cli/apps/services"
    text = (embedded / "postgres-embedded.yaml").read_text()
    assert f"image: {RUNNER_IMAGE}" in text


CLUSTER_KEY = "the-cluster-key"


def test_each_instance_has_its_own_key_derived_from_the_cluster_key() -> None:
    cloud, other = instance_password(CLUSTER_KEY, "cloud"), instance_password(CLUSTER_KEY, "other")
    assert cloud != other and CLUSTER_KEY not in (cloud, other)
    # The same key again from the same cluster key (`backup key export` recovers every
    # instance): HMAC-SHA256(cluster key, "libresh-backup/v1/" + instance), URL-safe base64.
    digest = hmac.new(CLUSTER_KEY.encode(), b"libresh-backup/v1/cloud", hashlib.sha256).digest()
    assert cloud == base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert len(cloud) == 43 and re.fullmatch(r"[A-Za-z0-9_-]+", cloud)
    assert instance_password("another-cluster-key", "cloud") != cloud


def test_repository_url_and_environment_for_s3() -> None:
    values = {
        "restic_password": CLUSTER_KEY,
        "aws_access_key_id": "id",
        "aws_secret_access_key": "k",
    }
    env = repository_env(S3, values, "cloud")
    assert env == {
        "RESTIC_REPOSITORY": "s3:https://s3.example.org/coop-backups/libresh/cloud",
        "RESTIC_PASSWORD": instance_password(CLUSTER_KEY, "cloud"),
        "LIBRESH_REPOSITORY_OF": "cloud",
        "AWS_ACCESS_KEY_ID": "id",
        "AWS_SECRET_ACCESS_KEY": "k",
    }
    assert CLUSTER_KEY not in env.values()
    assert repository_volume(S3, "cloud", "cloud") == []


def test_a_node_path_gives_a_namespace_its_instance_directory_only() -> None:
    env = repository_env(NODE, {"restic_password": CLUSTER_KEY}, "cloud")
    assert env["RESTIC_REPOSITORY"] == "/repository" and "AWS_ACCESS_KEY_ID" not in env
    volume, claim = repository_volume(NODE, "cloud", "cloud")
    assert volume["spec"]["hostPath"]["path"] == "/var/backups/libresh/cloud"
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert volume["spec"]["claimRef"] == {"namespace": "cloud", "name": claim["metadata"]["name"]}
    terms = volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == ["node-1"]
    assert claim["spec"]["volumeName"] == volume["metadata"]["name"]
    # A clone reads its source's directory through a claim of its own, for that run.
    source, source_claim = repository_volume(NODE, "copy", "cloud", "libresh-backup-from-cloud")
    assert source["spec"]["hostPath"]["path"] == "/var/backups/libresh/cloud"
    assert source_claim["metadata"] == {
        "name": "libresh-backup-from-cloud",
        "namespace": "copy",
        "labels": {"app.kubernetes.io/managed-by": "libresh"},
    }
    assert source["metadata"]["name"] != volume["metadata"]["name"]
    # libresh-system (never an app) sees the whole path: it makes the instances' repositories.
    whole, _ = repository_volume(NODE, "libresh-system", None)
    assert whole["spec"]["hostPath"]["path"] == "/var/backups/libresh"
    assert (
        repository_env(NODE, {"restic_password": "k"}, "cloud", whole_storage=True)[
            "RESTIC_REPOSITORY"
        ]
        == "/repository/cloud"
    )


def test_a_runner_job_reads_a_secret_of_its_own_that_it_owns() -> None:
    job = runner_job(nextcloud_target(), NODE, "backup", "20250101T000000Z-abcd", {}, 60)
    name = job["metadata"]["name"]
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": name}}]
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert "libresh-backup-repository" in claims
    made = {**job, "metadata": {**job["metadata"], "uid": "1234"}}
    env = repository_env(NODE, {"restic_password": CLUSTER_KEY}, "cloud")
    secret = repository_secret(name, "cloud", env, owner=made)
    assert secret["metadata"]["name"] == name and secret["metadata"]["namespace"] == "cloud"
    assert secret["metadata"]["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": "1234"}
    ]
    assert secret["metadata"]["labels"]["libresh.dev/backup-repository"] == "cloud"
    clone = runner_job(nextcloud_target(), NODE, "restore", "r", {}, 60, "libresh-backup-from-x")
    volumes = clone["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "repository",
        "persistentVolumeClaim": {"claimName": "libresh-backup-from-x"},
    } in volumes


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        (BackupStorage("s3", endpoint="s3.example.org", bucket="b-1"), "not an http(s) URL"),
        (BackupStorage("s3", endpoint="https://x", bucket="A"), "is not a bucket name"),
        (BackupStorage("path", path="backups", node="n"), "absolute directory"),
        (BackupStorage("path", path="/", node="n"), "absolute directory"),
        (BackupStorage("path", path="/b", node="Bad_Node"), "is not a node name"),
    ],
)
def test_bad_storage_is_refused(storage: BackupStorage, message: str) -> None:
    with pytest.raises(BadInputError, match=re.escape(message)):
        check_storage(storage)


def test_backup_job_mounts_volumes_database_and_meta() -> None:
    job = runner_job(nextcloud_target(), S3, "backup", "20261122T0300Z-ab12", {"X": "1"}, 600)
    assert job["metadata"]["name"] == "libresh-backup-20261122t0300z-ab12"
    spec = job["spec"]["template"]["spec"]
    runner = spec["containers"][0]
    env = {e["name"]: e["value"] for e in runner["env"]}
    assert env["LIBRESH_VOLUMES"] == "nextcloud-data"
    assert env["LIBRESH_DATABASES"] == "postgres"
    assert env["LIBRESH_META_DIR"] == "/meta" and env["X"] == "1"
    paths = [m["mountPath"] for m in runner["volumeMounts"]]
    assert "/data/nextcloud-data" in paths and "/databases/postgres" in paths
    assert "/meta/secrets/libresh-redis" in paths  # every service's Secret is kept
    assert "/repository" not in paths  # S3: nothing mounted
    # One-off Jobs are pinned by name when made (libresh_cli/apps/placement.py); the
    # schedule's pods need the labels of the pods that use the volumes.
    assert "affinity" not in spec
    users = (("app.kubernetes.io/component", "nextcloud"), ("app.kubernetes.io/instance", "cloud"))
    scheduled = runner_job(
        replace(nextcloud_target(), volume_users=users), S3, "scheduled", "x", {}, 600
    )["spec"]["template"]["spec"]
    (term,) = scheduled["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["labelSelector"]["matchLabels"] == dict(users)
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert job["spec"]["activeDeadlineSeconds"] == 600


def test_listing_and_init_jobs_touch_no_data() -> None:
    for action in ("snapshots", "forget", "init"):
        job = runner_job(nextcloud_target(), NODE, action, "x", {}, 60)
        runner = job["spec"]["template"]["spec"]["containers"][0]
        paths = [m["mountPath"] for m in runner["volumeMounts"]]
        assert paths == ["/tools", "/runner", "/work", "/work/cache", "/repository"], action


def test_the_runners_secrets_are_staged_in_memory_and_its_cache_on_disk() -> None:
    # The runner's files (TMPDIR) and the record and Secrets it stages beside the volumes are
    # Secrets: memory-backed volumes, never the node's disk. restic's cache and temporary
    # packs are large: a disk volume.
    for action in ("backup", "scheduled", "restore", "snapshots", "forget", "init"):
        spec = runner_job(nextcloud_target(), S3, action, "x", {}, 60)["spec"]["template"]["spec"]
        runner = spec["containers"][0]
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in runner["volumeMounts"]}
        env = {e["name"]: e["value"] for e in runner["env"]}
        secrets = [env["TMPDIR"]]
        if action in ("backup", "scheduled"):
            secrets.append("/data/.libresh-meta")
        for path in secrets:
            assert mounts[path]["emptyDir"]["medium"] == "Memory", (action, path)
            assert mounts[path]["emptyDir"]["sizeLimit"], (action, path)
        assert env["RESTIC_CACHE_DIR"] == "/work/cache"
        assert mounts["/work/cache"]["emptyDir"] == {}, action  # on disk


def test_restore_job_mounts_data_but_not_meta() -> None:
    job = runner_job(nextcloud_target(), NODE, "restore", "x", {}, 60)
    runner = job["spec"]["template"]["spec"]["containers"][0]
    paths = [m["mountPath"] for m in runner["volumeMounts"]]
    assert "/data/nextcloud-data" in paths and not any(p.startswith("/meta") for p in paths)


def test_schedule_is_a_cronjob_that_never_overlaps() -> None:
    cronjob = schedule_cronjob(nextcloud_target(), S3, "30 3 * * *", Retention(7, 4, 0), 3600)
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert (env["LIBRESH_ACTION"], env["LIBRESH_KEEP_MONTHLY"]) == ("scheduled", "0")
    # The one repository Secret an app namespace keeps (one-off runs delete theirs).
    assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "libresh-backup-schedule"}}]


def test_the_runner_configmap_carries_the_script() -> None:
    configmap = runner_configmap("cloud")
    assert configmap["data"]["backup-runner.sh"] == runner_script().read_text()
    assert runner_script().read_text().startswith("#!/bin/sh")


def test_job_names_stay_valid() -> None:
    name = job_name("restore", "X" * 80)
    assert len(name) <= 63 and name == name.lower()


@pytest.mark.parametrize("good", ["30 3 * * *", "*/15 * * * 1-5", "@daily", "0 4 * * sun"])
def test_good_cron(good: str) -> None:
    assert check_cron(good) == good


@pytest.mark.parametrize("bad", ["every night", "30 3 * *", "30 3 * * * *", "30 3 * * $(x)"])
def test_bad_cron(bad: str) -> None:
    with pytest.raises(BadInputError, match="five fields"):
        check_cron(bad)


def test_results_from_termination_messages() -> None:
    ok = parse_result('{"ok":true,"backup":"b1","files":3,"bytes":10,"added":5}\n')
    assert ok is not None and ok.ok and ok.data and ok.data["files"] == 3
    failed = parse_result('{"ok":false,"code":12,"error":"wrong repository password"}')
    assert failed is not None and not failed.ok and failed.code == 12
    assert failed.hint is not None and "--password-file" in failed.hint
    assert "password is wrong" in failed.meaning
    assert parse_result("") is None and parse_result("killed") is None
    assert parse_result("[1, 2]") is None


def test_listing_parses_and_finds() -> None:
    entries = parse_backups(
        "a 2026-11-01T03:00:00Z 30.0.12 scheduled;b 2026-11-02T03:00:00Z 31.0.6 pre-upgrade;"
    )
    assert [(e.backup, e.version) for e in entries] == [("a", "30.0.12"), ("b", "31.0.6")]
    assert find_backup(entries, None, "cloud").backup == "b"
    assert find_backup(entries, "a", "cloud").version == "30.0.12"
    with pytest.raises(NotFoundError, match="no backup zz"):
        find_backup(entries, "zz", "cloud")
    with pytest.raises(NotFoundError, match="no backup of cloud"):
        find_backup([], None, "cloud")


def test_lab_stand_in_stages_select_only_runner_pods() -> None:
    stages_file = (
        Path(__file__).resolve().parents[2] / "libresh_cli/lab/stages/libresh-backup-runner.yaml"
    )
    stages = list(yaml.safe_load_all(stages_file.read_text()))
    for stage in stages:
        keys = [e["key"] for e in stage["spec"]["selector"]["matchExpressions"]]
        assert '.metadata.labels["libresh.dev/backup-runner"]' in keys
    assert (
        json.loads(
            stages[1]["spec"]["next"]["statusTemplate"].split("message: '")[1].split("'")[0]
        )["code"]
        == 11
    )


def test_uninstall_removes_the_schedule_backup_makes() -> None:
    """apps/ sits below backup/ and names the schedule's objects itself: the same names."""
    from libresh_cli.apps.inventory import BACKUP_SCHEDULE
    from libresh_cli.backup.jobs import SCHEDULE_NAME
    from libresh_cli.backup.storage import SCHEDULE_SECRET

    assert BACKUP_SCHEDULE == (SCHEDULE_NAME, SCHEDULE_SECRET)
