"""Comparing an object as it is with what applying would make of it."""

from __future__ import annotations

import json
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


MAX_FIELDS = 20
MAX_VALUE = 80
SECRET_FIELDS = ("data", "stringData")


def changed_fields(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """What applying would change, field by field, as `path: old -> new` (a Secret's values
    as "(changed)", never their text): what `libresh diff` and the plans show, as kubectl diff
    does. Both objects are normalized first."""
    secret = wanted.get("kind") == "Secret"
    found: list[str] = []
    _walk(normalize(current), normalize(wanted), "", secret, found)
    if len(found) > MAX_FIELDS:
        return [*found[:MAX_FIELDS], f"… and {len(found) - MAX_FIELDS} more"]
    return found


def _walk(old: Any, new: Any, path: str, secret: bool, found: list[str]) -> None:
    if old == new:
        return
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new), key=str):
            _walk(old.get(key), new.get(key), f"{path}.{key}" if path else str(key), secret, found)
        return
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            _walk(a, b, f"{path}[{index}]", secret, found)
        return
    if secret and path.split(".")[0] in SECRET_FIELDS:
        found.append(f"{path}: (changed)")
        return
    found.append(f"{path}: {_shown(old)} -> {_shown(new)}")


def _shown(value: Any) -> str:
    if value is None:
        return "(none)"
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"
