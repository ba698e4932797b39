"""libresh's own Kube adapter, talking to the lab's real API server, with the Nextcloud MODEL
(tests/models/nextcloud.py) deciding what the pods libresh starts would do on a real node.

kwok runs no containers: its pods become ready and its Jobs succeed whatever they run. Here,
each object libresh applies is first played on the model of its namespace, in the order
libresh applies them (which is the order things happen: hooks and runners are waited for
before the next step):
  - the Deployment `nextcloud` (replicas > 0): the image's entrypoint on the instance's
    volume, then its readiness probe;
  - a hook Job: its command, with the volume's code;
  - a backup runner Job: a snapshot of the volume and database (backup), or one put back
    (restore), as the runner does them;
and when the model says it fails, the object gets the lab's label lab.libresh.dev/fail=true,
so kwok's failure Stages (libresh_cli/lab/stages/libresh-fail.yaml) make its pods crash-loop
or its Job fail. libresh then sees on the lab what a real k3s would show it.
"""

from __future__ import annotations

import base64
import copy
import threading
from typing import Any

from libresh_cli.apps.hooks import HOOK_LABEL
from libresh_cli.backup.jobs import RUNNER_LABEL
from libresh_cli.kube.client import KubeClient
from tests.models.nextcloud import (
    Connection,
    Database,
    NextcloudModel,
    Outcome,
    Volume,
    run_hook_command,
)

Manifest = dict[str, Any]
FAIL_LABEL = "lab.libresh.dev/fail"


class ModelledKube(KubeClient):
    models: dict[str, NextcloudModel]
    backups: dict[tuple[str, str], tuple[Volume, Database]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.models, self.backups = {}, {}
        self._model_lock = threading.Lock()

    def apply(
        self, manifest: Manifest, *, namespace: str | None = None, dry_run: bool = False
    ) -> Manifest:
        if not dry_run:
            with self._model_lock:
                manifest = self._play(manifest)
        return super().apply(manifest, namespace=namespace, dry_run=dry_run)

    # -- what the objects do ------------------------------------------------------------------

    def _play(self, manifest: Manifest) -> Manifest:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        namespace = manifest["metadata"].get("namespace", "")
        labels = manifest["metadata"].get("labels", {}) or {}
        if kind == "Deployment" and name == "nextcloud":
            return self._start(manifest, namespace)
        if kind == "Job" and HOOK_LABEL in labels:
            return self._hook(manifest, namespace)
        if kind == "Job" and RUNNER_LABEL in labels:
            return self._runner(manifest, namespace)
        return manifest

    def _start(self, manifest: Manifest, namespace: str) -> Manifest:
        if manifest["spec"].get("replicas", 1) == 0:
            return manifest
        model = self.model(namespace)
        outcome = model.start(_version_of(manifest), self.connection_of(namespace))
        return manifest if outcome.ok and model.ready() else _failing(manifest)

    def _hook(self, manifest: Manifest, namespace: str) -> Manifest:
        command = manifest["spec"]["template"]["spec"]["containers"][0]["command"]
        outcome = run_hook_command(self.model(namespace), command, self.connection_of(namespace))
        return manifest if outcome.ok else _failing(manifest)

    def _runner(self, manifest: Manifest, namespace: str) -> Manifest:
        env = _env(manifest)
        action, backup = env.get("LIBRESH_ACTION"), env.get("LIBRESH_BACKUP_ID", "")
        conn = self.connection_of(namespace)
        if action in ("backup", "scheduled"):
            self.backups[(namespace, backup)] = self.model(namespace).snapshot(conn)
        elif action == "restore":
            source = env.get("LIBRESH_INSTANCE", namespace)
            taken = self.backups.get((source, backup))
            if taken is None:  # as restic failing half-way through the volumes (exit 16)
                return _with_env(manifest, "LIBRESH_LAB", "lab-files-fail")
            self.model(namespace).restore(taken, conn)
        return manifest

    # -- the instance's model and connection -------------------------------------------------

    def model(self, namespace: str) -> NextcloudModel:
        """The namespace's Nextcloud and embedded PostgreSQL: libresh's role for the app exists
        from the server's first start (postgres-embedded-init.sh)."""
        if namespace not in self.models:
            role = self.connection_of(namespace).user
            self.models[namespace] = NextcloudModel(db=Database(roles={role: False}))
        return self.models[namespace]

    def connection_of(self, namespace: str) -> Connection:
        secret = self.get("v1", "Secret", "libresh-postgres", namespace) or {}
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        return Connection(
            f"{data.get('host', '')}:{data.get('port', '')}",
            data.get("database", ""),
            data.get("username", ""),
        )


def _version_of(manifest: Manifest) -> str:
    image = str(manifest["spec"]["template"]["spec"]["containers"][0]["image"])
    return image.rsplit(":", 1)[1].split("-")[0]


def _env(manifest: Manifest) -> dict[str, str]:
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: str(e.get("value", "")) for e in container.get("env", []) or []}


def _with_env(manifest: Manifest, name: str, value: str) -> Manifest:
    changed = copy.deepcopy(manifest)
    container = changed["spec"]["template"]["spec"]["containers"][0]
    container.setdefault("env", []).append({"name": name, "value": value})
    return changed


def _failing(manifest: Manifest) -> Manifest:
    failing = copy.deepcopy(manifest)
    template = failing["spec"]["template"].setdefault("metadata", {})
    template.setdefault("labels", {})[FAIL_LABEL] = "true"
    return failing


__all__ = ["FAIL_LABEL", "ModelledKube", "Outcome"]
