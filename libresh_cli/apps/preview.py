"""What `uninstall` would do (its --dry-run), read from the instance's record, changing
nothing."""

from __future__ import annotations

from libresh_cli.apps.inventory import BACKUP_SCHEDULE, KEPT_ON_UNINSTALL
from libresh_cli.apps.record import require_record
from libresh_cli.kube.client import KubeClient


def uninstall_actions(kube: KubeClient, name: str, purge_data: bool) -> list[str]:
    record = require_record(kube, name)
    if purge_data:
        return [f"delete namespace {name} with everything in it: data volumes and credentials"]
    deleted = [f"delete {kind}/{obj_name}" for _, kind, obj_name in reversed(record.inventory)
               if kind not in KEPT_ON_UNINSTALL]  # fmt: skip
    kept = [f"{kind}/{obj_name}" for _, kind, obj_name in record.inventory
            if kind in KEPT_ON_UNINSTALL]  # fmt: skip
    cronjob = kube.get("batch/v1", "CronJob", BACKUP_SCHEDULE[0], name)
    if cronjob is not None:
        deleted.append(f"delete the backup schedule ({cronjob['spec']['schedule']})")
    return [*deleted, f"keep {', '.join(kept) or 'nothing'} (data) and {name}'s record"]
