"""Nextcloud's install, upgrade, failed upgrade with rollback, and clone, through libresh's
real services on the lab's real API server, with a MODEL of the Nextcloud image deciding
what each pod and Job would do on a real node (tests/models/modelled_kube.py): an entrypoint
that refuses a volume of a newer version, `occ upgrade` exit codes, maintenance mode, the
installer's database role, what a restore does to table ownership."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from libresh_cli.apps.catalog import Catalog
from libresh_cli.apps.lifecycle import install, plan_install
from libresh_cli.apps.params import GivenValues
from libresh_cli.apps.providers import ExternalService, set_provider
from libresh_cli.apps.record import read_record
from libresh_cli.apps.upgrade import UpgradeFailedError, plan_upgrade, upgrade
from libresh_cli.backup.runner import BackupEntry
from libresh_cli.backup.service import (
    BackupSafeguard,
    RestoreFailedError,
    restore_as,
    restore_backup,
    take_backup,
)
from libresh_cli.kube.client import KubeClient
from libresh_cli.kube.connection import KubeTarget
from libresh_cli.progress import SilentReporter
from tests.integration.conftest import Lab
from tests.integration.test_apps import libresh, ok
from tests.models.modelled_kube import FAIL_LABEL, ModelledKube

CATALOG = Catalog.from_sources([Path(__file__).resolve().parents[2] / "apps"])
BACKUP_PATH = "/var/backups/libresh-lab"


@pytest.fixture(scope="module")
def storage(lab: Lab) -> None:
    with lab.kube() as kube:
        node = str(kube.list("v1", "Node")[0]["metadata"]["name"])
    ok(libresh(lab, "backup", "storage", "set", "--path", BACKUP_PATH, "--node", node))


@pytest.fixture
def modelled(lab: Lab, storage: None) -> Iterator[ModelledKube]:
    kube = ModelledKube.connect(KubeTarget(lab.kubeconfig))
    try:
        yield kube
    finally:
        for namespace in kube.models:
            kube.delete("v1", "Namespace", namespace)
        kube.close()


def install_nextcloud(kube: KubeClient, version: str) -> str:
    name = f"m{uuid.uuid4().hex[:8]}"
    given = GivenValues()
    given.add("domain", f"{name}.example.org", "--domain")
    install(
        kube, plan_install(kube, CATALOG, "nextcloud", name, given, version, None), SilentReporter()
    )
    return name


def image_of(kube: KubeClient, name: str) -> tuple[str, dict[str, str]]:
    deployment = kube.get("apps/v1", "Deployment", "nextcloud", name)
    assert deployment is not None
    template = deployment["spec"]["template"]
    return template["spec"]["containers"][0]["image"], template["metadata"].get("labels", {})


def test_an_upgrade_with_backups_ends_migrated_and_out_of_maintenance(
    modelled: ModelledKube,
) -> None:
    name = install_nextcloud(modelled, "33.0.7")
    model = modelled.models[name]
    assert model.ready() and model.volume.config["dbuser"] == "nextcloud"  # no oc_admin
    reporter = SilentReporter()
    plan = plan_upgrade(modelled, CATALOG, name, None)
    upgrade(modelled, plan, BackupSafeguard(modelled, CATALOG, reporter), reporter)

    assert (model.volume.code, model.db.schema_version) == ("34.0.2", "34.0.2")
    assert model.volume.maintenance is False and model.ready()
    image, labels = image_of(modelled, name)
    assert image.endswith(":34.0.2-apache") and FAIL_LABEL not in labels
    record = read_record(modelled, name)
    assert record is not None and (record.version, record.status) == ("34.0.2", "installed")

    # The hooks ran on the node of the pod that holds the ReadWriteOnce volume (on hcloud
    # volumes, anywhere else they would wait in Multi-Attach); the cron job goes there too.
    (pod,) = modelled.list(
        "v1", "Pod", name, label_selector="app.kubernetes.io/component=nextcloud"
    )
    hooks = modelled.list("batch/v1", "Job", name, label_selector="libresh.dev/hook=post-upgrade")
    last = [j for j in hooks if j["metadata"]["name"].endswith("-34-0-2")]
    assert len(last) == 3  # add-missing-indices, maintenance-off, office-link
    for job in last:
        affinity = job["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
        (term,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert term["matchFields"][0]["values"] == [pod["spec"]["nodeName"]]
    cron = modelled.get("batch/v1", "CronJob", "nextcloud-cron", name)
    assert cron is not None
    cron_pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (together,) = cron_pod["affinity"]["podAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert together["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "nextcloud"
    env = {e["name"] for e in cron_pod["containers"][0]["env"]}
    assert {"REDIS_HOST", "REDIS_HOST_PORT", "OVERWRITECLIURL", "OVERWRITEHOST"} <= env


def test_a_failed_migration_is_rolled_back_to_a_working_previous_version(
    modelled: ModelledKube,
) -> None:
    name = install_nextcloud(modelled, "33.0.7")
    model = modelled.models[name]
    model.volume.files = model.db.files = 7
    model.broken_migration_to = "34.0.2"
    reporter = SilentReporter()
    plan = plan_upgrade(modelled, CATALOG, name, None)
    with pytest.raises(UpgradeFailedError, match=r"rolled back to 33\.0\.7, its data restored"):
        upgrade(modelled, plan, BackupSafeguard(modelled, CATALOG, reporter), reporter)

    # The restore came first: the old image found its own version on the volume.
    assert not [line for line in model.log if "higher than the docker image" in line]
    assert (model.volume.code, model.db.schema_version) == ("33.0.7", "33.0.7")
    assert (model.volume.files, model.db.files) == (7, 7)
    assert model.volume.maintenance is False and model.ready()
    image, labels = image_of(modelled, name)
    assert image.endswith(":33.0.7-apache") and FAIL_LABEL not in labels
    record = read_record(modelled, name)
    assert record is not None and (record.version, record.status) == ("33.0.7", "installed")
    assert record.history[-1].result == "rolled-back"


def test_a_clone_reads_its_own_database(modelled: ModelledKube) -> None:
    source = install_nextcloud(modelled, "34.0.2")
    modelled.models[source].db.files = 7
    reporter = SilentReporter()
    taken = take_backup(modelled, CATALOG, source, "manual", reporter)
    clone = f"c{uuid.uuid4().hex[:8]}"
    entry = BackupEntry(taken.backup, "", "34.0.2", "manual", "nextcloud")
    restore_as(modelled, CATALOG, source, clone, f"{clone}.example.org", entry, reporter)

    model = modelled.models[clone]
    assert model.ready() and model.db.files == 7
    assert model.volume.config["dbuser"] == modelled.connection_of(clone).user
    assert model.db.owner == model.volume.config["dbuser"]
    assert model.volume.maintenance is False
    image, labels = image_of(modelled, clone)
    assert image.endswith(":34.0.2-apache") and FAIL_LABEL not in labels


def test_a_rollback_on_external_postgres_makes_its_provisioning_job_again(
    modelled: ModelledKube,
) -> None:
    """Every pod template carries the version label, and a Job's template cannot change: the
    restore that starts the previous version must make the provisioning Job anew."""
    external = ExternalService("postgres", "db.example.org", 5432, "admin", "require")
    set_provider(modelled, "postgres", external, "adm1n-secret")
    try:
        name = install_nextcloud(modelled, "33.0.7")
    finally:
        set_provider(modelled, "postgres", None, None)  # later installs: embedded again
    model = modelled.models[name]
    assert model.volume.config["dbname"] == f"libresh_{name}"
    model.broken_migration_to = "34.0.2"
    reporter = SilentReporter()
    plan = plan_upgrade(modelled, CATALOG, name, None)
    with pytest.raises(UpgradeFailedError, match=r"rolled back to 33\.0\.7, its data restored"):
        upgrade(modelled, plan, BackupSafeguard(modelled, CATALOG, reporter), reporter)
    job = modelled.get("batch/v1", "Job", "postgres-provision", name)
    assert job is not None
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/version"] == "33.0.7"
    assert model.ready() and model.volume.code == "33.0.7"


def test_a_restore_that_failed_half_way_leaves_the_app_stopped_and_says_so(
    modelled: ModelledKube,
) -> None:
    name = install_nextcloud(modelled, "34.0.2")
    missing = BackupEntry("not-in-the-repository", "", "34.0.2", "manual", "nextcloud")
    with pytest.raises(RestoreFailedError, match="is left stopped") as failed:
        restore_backup(modelled, CATALOG, name, missing, SilentReporter(), safety_backup=False)
    assert f"libresh restore {name} --snapshot not-in-the-repository" in str(failed.value.hint)
    deployment = modelled.get("apps/v1", "Deployment", "nextcloud", name)
    assert deployment is not None and deployment["spec"]["replicas"] == 0
