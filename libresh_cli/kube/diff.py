"""Comparing an object as it is with what applying would make of it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Fields the server sets or that change without anyone changing the object.
VOLATILE_METADATA = (
    "managedFields",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "uid",
    "selfLink",
)


def normalize(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The object without server-owned noise, for comparing what is with what would be."""
    result = {k: v for k, v in manifest.items() if k != "status"}
    metadata = {k: v for k, v in result.get("metadata", {}).items() if k not in VOLATILE_METADATA}
    annotations = {
        k: v
        for k, v in metadata.get("annotations", {}).items()
        if k != "deployment.kubernetes.io/revision"
    }
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    result["metadata"] = metadata
    return result
