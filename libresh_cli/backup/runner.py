"""The backup runner script (bootstrap/backup-runner.sh) and what its results mean.

The script is the same file in a backup Job (mounted from a ConfigMap) and in the tests, which
run it against a real PostgreSQL server and a real restic repository."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from libresh_cli.settings import bootstrap_file

RUNNER_NAME = "backup-runner.sh"

# The runner's exit codes (documented in the script's header) and what a person should do.
EXIT_MEANINGS = {
    2: "The backup Job was given incomplete inputs (a libresh bug: please report it).",
    10: "There is no backup repository at the configured storage.",
    11: "The backup storage cannot be reached.",
    12: "The backup repository's password is wrong.",
    13: "The backup storage is full.",
    14: "That backup does not exist.",
    15: "The database could not be dumped or restored.",
    16: "The volume files could not be backed up or restored.",
    17: "The instance's backup repository is locked by another run (a backup, or its "
    "schedule's retention).",
}
EXIT_HINTS = {
    10: "Check `libresh backup storage show`; for a path on a node, is its disk mounted?",
    11: "Check the endpoint and the network from the cluster: `libresh backup storage show`.",
    12: "A repository another cluster made needs its key: "
    "libresh backup storage set … --password-file KEYFILE",
    13: "Free space on the backup storage, or lower the retention (`libresh backup schedule`).",
    14: "`libresh backups list NAME` shows the backups there are.",
    17: "Try again once the other backup or retention run of this instance has finished "
    "(`kubectl -n NAME get jobs` shows them).",
}


def runner_script() -> Path:
    return bootstrap_file(RUNNER_NAME)


@dataclass(frozen=True)
class RunnerResult:
    ok: bool
    code: int = 0
    error: str = ""
    data: dict[str, object] | None = None

    @property
    def meaning(self) -> str:
        return EXIT_MEANINGS.get(self.code, "The backup runner failed.")

    @property
    def hint(self) -> str | None:
        return EXIT_HINTS.get(self.code)


def parse_result(text: str | None) -> RunnerResult | None:
    """The runner's one-line JSON result (a container's termination message); None when the
    container left none (killed, or never started)."""
    if not text or not text.strip():
        return None
    try:
        data = json.loads(text.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return None
    if not isinstance(data, dict):
        return None
    return RunnerResult(
        ok=bool(data.get("ok")),
        code=int(data.get("code", 0) or 0),
        error=str(data.get("error", "")),
        data=data,
    )


@dataclass(frozen=True)
class BackupEntry:
    backup: str
    time: str
    version: str
    reason: str
    app: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "backup": self.backup,
            "time": self.time,
            "version": self.version,
            "reason": self.reason,
            "app": self.app,
        }


def parse_backups(listing: str) -> list[BackupEntry]:
    """`ID TIME VERSION REASON APP` per backup, one per line or `;`-separated (the result's
    form)."""
    entries = []
    for line in listing.replace(";", "\n").splitlines():
        fields = line.split()
        if len(fields) in (4, 5):
            entries.append(BackupEntry(*fields))
    return entries


@dataclass(frozen=True)
class BackupMeta:
    """What a backup says about its instance: its record (without history) and Secrets."""

    record: dict[str, Any]
    secrets: dict[str, dict[str, str]] = field(repr=False)


def decode_meta(hex_text: str, pad: bytes) -> BackupMeta:
    """Undo the runner's `meta` action: hex -> XOR with the pad -> gzip -> tar of
    record/record.json and secrets/NAME/KEY."""
    try:
        sealed = bytes.fromhex(hex_text)
        if len(sealed) > len(pad):
            raise ValueError("longer than the pad")
        packed = gzip.decompress(bytes(a ^ b for a, b in zip(sealed, pad, strict=False)))
        files: dict[str, str] = {}
        with tarfile.open(fileobj=io.BytesIO(packed)) as archive:
            for member in archive.getmembers():
                content = archive.extractfile(member) if member.isfile() else None
                if content is not None:
                    files[member.name.removeprefix("./")] = content.read().decode()
        record = json.loads(files.pop("record/record.json"))
    except (ValueError, OSError, EOFError, KeyError, tarfile.TarError) as error:
        raise ValueError(f"the backup's record could not be read: {error}") from error
    secrets: dict[str, dict[str, str]] = {}
    for path, value in files.items():
        parts = path.split("/")
        if len(parts) == 3 and parts[0] == "secrets":
            secrets.setdefault(parts[1], {})[parts[2]] = value
    return BackupMeta(record, secrets)
