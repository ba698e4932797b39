"""restore --as of GoToSocial, whose domain is in every ID its data holds (immutable), through
the `libresh` command on the lab: beside the running source the copy is refused before anything
is made, saying it can only replace the original; once the source is uninstalled, the copy
takes its place under the same domain. kwok runs no container: libresh's side only (records,
Ingress, the restore), as in test_more_apps_2.py."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from libresh_cli.apps.record import read_record
from libresh_cli.errors import ExitCode
from libresh_cli.kube.client import KubeClient
from tests.integration.conftest import Lab
from tests.integration.test_apps import install, libresh, ok
from tests.integration.test_backup_lab import storage

__all__ = ["storage"]  # the backup storage fixture of test_backup_lab, used here as is


@pytest.fixture
def names(kube: KubeClient) -> Iterator[tuple[str, str]]:
    source, copy = f"s{uuid.uuid4().hex[:8]}", f"c{uuid.uuid4().hex[:8]}"
    yield source, copy
    for name in (source, copy):
        kube.delete("v1", "Namespace", name)


def test_a_gotosocial_copy_can_only_replace_the_original(
    lab: Lab, kube: KubeClient, storage: str, names: tuple[str, str]
) -> None:
    source, copy = names
    domain = f"{source}.example.org"
    ok(install(lab, "gotosocial", source, domain))
    ok(libresh(lab, "backup", source))

    for extra in ([], ["--domain", f"{copy}.example.org"]):
        refused = libresh(lab, "restore", source, "--as", copy, *extra, "--yes")
        assert refused.returncode == ExitCode.BAD_INPUT, refused.stderr
        assert "A gotosocial backup can only replace the original." in refused.stderr
        assert f"libresh restore {source}" in refused.stderr
        assert read_record(kube, copy) is None
        assert kube.get("v1", "Namespace", copy) is None

    # With the original uninstalled, the copy takes its place and keeps its domain.
    ok(libresh(lab, "uninstall", source, "--yes"))
    moved = libresh(lab, "restore", source, "--as", copy, "--domain", "other.example.org")
    assert moved.returncode == ExitCode.BAD_INPUT
    assert f"keeps its domain '{domain}'" in moved.stderr
    done = json.loads(
        ok(libresh(lab, "restore", source, "--as", copy, "--yes", "-o", "json")).stdout
    )
    assert done["instance"] == copy
    record = read_record(kube, copy)
    assert record is not None and record.params["domain"] == domain
    ingress = kube.get("networking.k8s.io/v1", "Ingress", "gotosocial", copy)
    assert ingress is not None and ingress["spec"]["rules"][0]["host"] == domain
