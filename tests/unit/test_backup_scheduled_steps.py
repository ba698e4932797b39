"""The app's pre_backup steps marked `scheduled: true`, run before scheduled backups as init
containers of the CronJob's pod (libresh_cli/backup/jobs.py, apps/hooks.py hook_pod_spec)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from libresh_cli.apps import hooks
from libresh_cli.apps.catalog import builtin_catalog, validate_app
from libresh_cli.apps.instance import Instance
from libresh_cli.apps.model import App
from libresh_cli.apps.render import render
from libresh_cli.apps.schema import CatalogInvalidError, load_app
from libresh_cli.backup.jobs import (
    Retention,
    ScheduledStep,
    Target,
    retention_of,
    runner_pod_spec,
    schedule_cronjob,
    scheduled_step_names,
)
from libresh_cli.backup.storage import SCHEDULE_SECRET, BackupStorage

NODE = BackupStorage("path", path="/var/backups/libresh", node="node-1")
S3 = BackupStorage("s3", endpoint="https://s3.example.org/", bucket="coop-backups")
VAULTWARDEN = load_app(builtin_catalog() / "vaultwarden")
NEXTCLOUD = load_app(builtin_catalog() / "nextcloud")
Manifest = dict[str, Any]


def _instance(app: App, version: str, params: dict[str, Any]) -> Instance:
    chosen = app.version(version)
    assert chosen is not None
    return Instance("pw", app, chosen, params, {"admin_token": "t" * 48})


def _vaultwarden(version: str = "1.34.1") -> Instance:
    params = {"domain": "pw.example.org", "signups_allowed": False}
    return _instance(VAULTWARDEN, version, params)


def _steps(instance: Instance) -> tuple[ScheduledStep, ...]:
    objects = render(instance)
    return tuple(
        ScheduledStep(step.name, hooks.hook_pod_spec(step, instance, objects))
        for step in hooks.scheduled_steps(instance)
    )


def _pod(cronjob: Manifest) -> Manifest:
    pod: Manifest = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return pod


def _schedule(instance: Instance, steps: tuple[ScheduledStep, ...]) -> Manifest:
    target = Target.of(instance.name, instance.app, instance.version.version)
    return schedule_cronjob(target, NODE, "30 3 * * *", Retention(7, 4, 6), 3600, steps)


def test_vaultwarden_copies_its_database_before_scheduled_backups() -> None:
    instance = _vaultwarden()
    steps = _steps(instance)
    assert [s.name for s in steps] == ["sqlite-copy"]
    cronjob = _schedule(instance, steps)
    pod = _pod(cronjob)
    # After restic's copy, before the runner: a failing copy stops the run there.
    assert [c["name"] for c in pod["initContainers"]] == ["restic", "hook-sqlite-copy"]
    assert [c["name"] for c in pod["containers"]] == ["runner"]
    copying = pod["initContainers"][1]
    step = VAULTWARDEN.hooks["pre_backup"][0]
    assert copying["image"] == "docker.io/vaultwarden/server:1.34.1"
    assert copying["command"] == list(step.command)
    env = {e["name"]: e for e in copying["env"]}
    assert env["DATA_FOLDER"]["value"] == "/data"
    assert env["ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "admin_token"
    for gone in ("readinessProbe", "ports", "args"):
        assert gone not in copying
    # The volume the runner backs up, mounted once: the copy lands where the runner reads.
    assert copying["volumeMounts"] == [{"name": "data-vaultwarden-data", "mountPath": "/data"}]
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert sorted(claims) == sorted(set(claims))
    assert "vaultwarden-data" in claims
    assert not any(v["name"].startswith("hook-") for v in pod["volumes"])
    assert scheduled_step_names(cronjob) == ["sqlite-copy"]


def test_the_steps_follow_the_version() -> None:
    older = _pod(_schedule(_vaultwarden("1.34.1"), _steps(_vaultwarden("1.34.1"))))
    newer = _pod(_schedule(_vaultwarden("1.37.2"), _steps(_vaultwarden("1.37.2"))))
    assert older["initContainers"][1]["image"].endswith(":1.34.1")
    assert newer["initContainers"][1]["image"].endswith(":1.37.2")


def test_an_app_without_scheduled_steps_renders_as_before() -> None:
    nextcloud = _instance(
        NEXTCLOUD,
        "30.0.12",
        {"domain": "c.example.org", "admin_user": "a", "max_upload_size": "1G"},
    )
    # Maintenance mode on would stay on after a failed scheduled backup: not scheduled.
    assert NEXTCLOUD.hooks["pre_backup"] and hooks.scheduled_steps(nextcloud) == ()
    target = Target.of("cloud", NEXTCLOUD, "30.0.12")
    cronjob = schedule_cronjob(target, S3, "@daily", Retention(), 3600)
    env = {
        "LIBRESH_REASON": "scheduled",
        "LIBRESH_KEEP_DAILY": "7",
        "LIBRESH_KEEP_WEEKLY": "4",
        "LIBRESH_KEEP_MONTHLY": "6",
    }
    assert _pod(cronjob) == runner_pod_spec(target, S3, "scheduled", env, SCHEDULE_SECRET)
    assert scheduled_step_names(cronjob) == []
    assert retention_of(cronjob) == Retention()


def _own_step() -> ScheduledStep:
    """A step whose pod has what a Vaultwarden pod has not: another claim, a ConfigMap, an
    emptyDir, a pod-level security context, a sidecar-like restart policy."""
    pod = {
        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True},
        "imagePullSecrets": [{"name": "registry"}],
        "containers": [
            {
                "name": "app",
                "image": "example.org/app:2.0.0",
                "command": ["sh", "-c", "dump"],
                "securityContext": {"runAsUser": 33, "allowPrivilegeEscalation": False},
                "lifecycle": {"preStop": {"exec": {"command": ["true"]}}},
                "volumeMounts": [
                    {"name": "files", "mountPath": "/var/files", "subPath": "app"},
                    {"name": "config", "mountPath": "/etc/app", "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "cache", "mountPath": "/cache"},
                ],
            }
        ],
        "volumes": [
            {"name": "files", "persistentVolumeClaim": {"claimName": "app-files"}},
            {"name": "config", "configMap": {"name": "app-config"}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "cache", "persistentVolumeClaim": {"claimName": "app-cache"}},
            {"name": "unused", "secret": {"secretName": "x"}},
        ],
    }
    return ScheduledStep("dump", pod)


def test_other_volumes_are_prefixed_and_the_pod_security_carried() -> None:
    step = _own_step()
    again = ScheduledStep("dump-again", copy.deepcopy(step.pod))
    target = Target("app", "app", "2.0.0", volumes=("app-files",))
    pod = _pod(schedule_cronjob(target, NODE, "@daily", Retention(), 3600, (step, again)))
    assert [c["name"] for c in pod["initContainers"]] == ["restic", "hook-dump", "hook-dump-again"]
    dump = pod["initContainers"][1]
    assert dump["volumeMounts"] == [
        {"name": "data-app-files", "mountPath": "/var/files", "subPath": "app"},
        {"name": "hook-config", "mountPath": "/etc/app", "readOnly": True},
        {"name": "hook-tmp", "mountPath": "/tmp"},
        {"name": "hook-cache", "mountPath": "/cache"},
    ]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["hook-config"] == {"name": "hook-config", "configMap": {"name": "app-config"}}
    assert volumes["hook-tmp"] == {"name": "hook-tmp", "emptyDir": {}}
    assert volumes["hook-cache"]["persistentVolumeClaim"] == {"claimName": "app-cache"}
    assert "hook-unused" not in volumes and "hook-files" not in volumes  # nothing mounts them
    # Each claim once in the pod, each name once, whatever the steps share.
    names = [v["name"] for v in pod["volumes"]]
    assert len(names) == len(set(names))
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert len(claims) == len(set(claims))
    # The container's own user wins; the rest comes from the app's pod.
    assert dump["securityContext"] == {
        "runAsUser": 33,
        "allowPrivilegeEscalation": False,
        "runAsGroup": 1000,
        "runAsNonRoot": True,
    }
    assert "lifecycle" not in dump
    # The runner's own pod is the runner's: root, no pod-level context taken from the app.
    assert "securityContext" not in pod
    assert pod["containers"][0]["securityContext"] == {"runAsUser": 0}
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    # The step's pod is left as it was (hook Jobs are made from it too).
    assert step.pod["containers"][0]["volumeMounts"][0]["name"] == "files"


def test_retention_is_read_back_from_a_schedule() -> None:
    cronjob = _schedule(_vaultwarden(), ())
    assert retention_of(cronjob) == Retention(7, 4, 6)


APP = """\
schema_version: 1
name: broken
description: x
versions:
  - {version: 1.0.0, image: "example.org/x:1.0.0"}
parameters:
  - {name: domain, type: domain}
hooks:
"""
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec: {containers: [{name: c, image: example.org/x:1}]}
"""


def _package(tmp_path: Path, hooks_yaml: str) -> Path:
    folder = tmp_path / "broken"
    (folder / "templates").mkdir(parents=True)
    (folder / "app.yaml").write_text(APP + hooks_yaml)
    (folder / "templates" / "web.yaml").write_text(DEPLOYMENT)
    return folder


@pytest.mark.parametrize("phase", ["post_backup", "pre_upgrade", "post_restore"])
def test_scheduled_is_refused_outside_pre_backup(tmp_path: Path, phase: str) -> None:
    folder = _package(
        tmp_path, f"  {phase}:\n    - {{name: x, scheduled: true, job: {{command: [ls]}}}}\n"
    )
    with pytest.raises(CatalogInvalidError) as raised:
        validate_app(folder)
    [problem] = raised.value.problems
    assert problem.field == f"hooks.{phase}[0].scheduled"
    assert "only a pre_backup step" in problem.message
    said = str(raised.value)
    assert f"hooks.{phase}[0].scheduled" in said and str(folder / "app.yaml") in said


def test_scheduled_is_read_on_pre_backup(tmp_path: Path) -> None:
    folder = _package(
        tmp_path,
        "  pre_backup:\n"
        "    - {name: a, scheduled: true, job: {command: [ls]}}\n"
        "    - {name: b, job: {command: [ls]}}\n",
    )
    app = validate_app(folder)
    assert [(s.name, s.scheduled) for s in app.hooks["pre_backup"]] == [("a", True), ("b", False)]


def test_scheduled_must_be_true_or_false(tmp_path: Path) -> None:
    folder = _package(
        tmp_path, "  pre_backup:\n    - {name: a, scheduled: nightly, job: {command: [ls]}}\n"
    )
    with pytest.raises(CatalogInvalidError) as raised:
        validate_app(folder)
    assert [p.field for p in raised.value.problems] == ["hooks.pre_backup[0].scheduled"]
