"""The upgrade's plug-in point for backups (the backup issue implements it): called before each
step, its restore on rollback, and a failing pre-upgrade backup stops the upgrade before the
app is touched. The safeguard here records calls: it stands for libresh's own backup service."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from libresh_cli.apps.catalog import Catalog
from libresh_cli.apps.lifecycle import install, plan_install
from libresh_cli.apps.params import GivenValues
from libresh_cli.apps.record import read_record
from libresh_cli.apps.upgrade import UpgradeFailedError, plan_upgrade, upgrade
from libresh_cli.errors import OperationFailedError
from libresh_cli.kube.client import KubeClient
from libresh_cli.progress import SilentReporter

CATALOG = Catalog.from_sources([Path(__file__).resolve().parents[1] / "fixtures" / "catalog"])


class RecordingSafeguard:
    def __init__(self, refuse: bool = False) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.refuse = refuse

    def before_step(self, instance: str, version_from: str, version_to: str) -> str | None:
        self.calls.append(("before", version_from, version_to))
        if self.refuse:
            raise OperationFailedError("The backup storage did not answer.")
        return f"snapshot-before-{version_to}"

    def restore(self, instance: str, token: str) -> None:
        self.calls.append(("restore", token))


@pytest.fixture
def demo(kube: KubeClient) -> Iterator[str]:
    name = f"s{uuid.uuid4().hex[:8]}"
    given = GivenValues()
    given.add("domain", "s.example.org", "--domain")
    install(kube, plan_install(kube, CATALOG, "demo", name, given, "2.0.0", None), SilentReporter())
    yield name
    kube.delete("v1", "Namespace", name)


def _image(kube: KubeClient, name: str) -> str:
    deployment = kube.get("apps/v1", "Deployment", "demo", name)
    assert deployment is not None
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


def test_each_step_is_guarded_and_a_failed_step_is_restored(kube: KubeClient, demo: str) -> None:
    safeguard = RecordingSafeguard()
    with pytest.raises(UpgradeFailedError):
        upgrade(kube, plan_upgrade(kube, CATALOG, demo, "4.0.0"), safeguard, SilentReporter())
    assert safeguard.calls == [
        ("before", "2.0.0", "3.0.0"),
        ("before", "3.0.0", "4.0.0"),
        ("restore", "snapshot-before-4.0.0"),  # only the failed step is restored
    ]
    assert _image(kube, demo) == "example.org/demo:3.0.0"


def test_a_failing_pre_upgrade_backup_stops_before_the_app_is_touched(
    kube: KubeClient, demo: str
) -> None:
    before = read_record(kube, demo)
    safeguard = RecordingSafeguard(refuse=True)
    with pytest.raises(OperationFailedError, match="backup storage did not answer"):
        upgrade(kube, plan_upgrade(kube, CATALOG, demo, "3.0.0"), safeguard, SilentReporter())
    after = read_record(kube, demo)
    assert after == before  # no status change, no history entry
    assert _image(kube, demo) == "example.org/demo:2.0.0"
    hook_jobs = kube.list("batch/v1", "Job", demo, label_selector="libresh.dev/hook=pre-upgrade")
    assert hook_jobs == []  # not even the pre_upgrade hooks ran
