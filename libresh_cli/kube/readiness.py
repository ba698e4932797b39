"""Is this object ready? Pure functions over objects as the API returns them.

Each returns a `Readiness`: ready or not, whether it has failed for good, and a short reason a
person can read in a progress line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Manifest = Mapping[str, Any]


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str
    failed: bool = False


def _condition(manifest: Manifest, kind: str) -> Mapping[str, Any] | None:
    for condition in manifest.get("status", {}).get("conditions", []) or []:
        if condition.get("type") == kind:
            return condition  # type: ignore[no-any-return]
    return None


def _is_true(manifest: Manifest, kind: str) -> bool:
    condition = _condition(manifest, kind)
    return condition is not None and condition.get("status") == "True"


def _observed(manifest: Manifest) -> bool:
    status = manifest.get("status", {})
    generation = manifest.get("metadata", {}).get("generation", 0)
    return int(status.get("observedGeneration", 0)) >= int(generation)


def deployment(manifest: Manifest) -> Readiness:
    status = manifest.get("status", {})
    wanted = int(manifest.get("spec", {}).get("replicas", 1))
    if not _observed(manifest):
        return Readiness(False, "rollout not yet observed")
    progressing = _condition(manifest, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Readiness(False, "rollout exceeded its progress deadline", failed=True)
    updated = int(status.get("updatedReplicas", 0))
    available = int(status.get("availableReplicas", 0))
    total = int(status.get("replicas", 0))
    if updated < wanted:
        return Readiness(False, f"{updated}/{wanted} replicas updated")
    if total > updated:
        return Readiness(False, f"{total - updated} old replicas pending termination")
    if available < wanted:
        return Readiness(False, f"{available}/{wanted} replicas available")
    return Readiness(True, f"{available}/{wanted} replicas available")


def statefulset(manifest: Manifest) -> Readiness:
    status = manifest.get("status", {})
    wanted = int(manifest.get("spec", {}).get("replicas", 1))
    if not _observed(manifest):
        return Readiness(False, "rollout not yet observed")
    ready = int(status.get("readyReplicas", 0))
    updated = int(status.get("updatedReplicas", 0))
    if status.get("updateRevision") and status.get("currentRevision") != status.get(
        "updateRevision"
    ):
        return Readiness(False, f"{updated}/{wanted} replicas updated")
    if ready < wanted:
        return Readiness(False, f"{ready}/{wanted} replicas ready")
    return Readiness(True, f"{ready}/{wanted} replicas ready")


def job(manifest: Manifest) -> Readiness:
    if _is_true(manifest, "Complete"):
        return Readiness(True, "complete")
    failed = _condition(manifest, "Failed")
    if failed is not None and failed.get("status") == "True":
        return Readiness(False, f"failed: {failed.get('reason', '')}", failed=True)
    active = manifest.get("status", {}).get("active", 0)
    return Readiness(False, f"{active} pod(s) running")


def pod(manifest: Manifest) -> Readiness:
    phase = manifest.get("status", {}).get("phase", "Pending")
    if phase == "Failed":
        return Readiness(False, "pod failed", failed=True)
    if phase == "Succeeded":
        return Readiness(True, "pod completed")
    if _is_true(manifest, "Ready"):
        return Readiness(True, "pod ready")
    return Readiness(False, f"pod {phase.lower()}, not ready")


def node(manifest: Manifest) -> Readiness:
    return Readiness(
        _is_true(manifest, "Ready"),
        "node ready" if _is_true(manifest, "Ready") else "node not ready",
    )


def persistent_volume_claim(manifest: Manifest) -> Readiness:
    phase = manifest.get("status", {}).get("phase", "Pending")
    return Readiness(phase == "Bound", f"claim {phase.lower()}", failed=phase == "Lost")


def custom_resource_definition(manifest: Manifest) -> Readiness:
    established = _is_true(manifest, "Established")
    return Readiness(established, "established" if established else "not yet established")


CHECKS: dict[str, Callable[[Manifest], Readiness]] = {
    "Deployment": deployment,
    "StatefulSet": statefulset,
    "Job": job,
    "Pod": pod,
    "Node": node,
    "PersistentVolumeClaim": persistent_volume_claim,
    "CustomResourceDefinition": custom_resource_definition,
}


def readiness(manifest: Manifest) -> Readiness:
    """Objects without a notion of readiness (ConfigMaps, Services…) are ready once they exist."""
    check = CHECKS.get(str(manifest.get("kind", "")))
    return check(manifest) if check else Readiness(True, "exists")
