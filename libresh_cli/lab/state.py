"""What a running lab is: written when it is up, read by status and down.

Layout under $XDG_STATE_HOME/libresh/lab/NAME/: lab.json (this record), kubeconfig (0600),
pki/, etcd/ (data), logs/.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from libresh_cli.errors import BadInputError
from libresh_cli.lab.processes import ProcessRecord
from libresh_cli.settings import Paths, write_private_file

NAME_PATTERN = re.compile(r"[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?")
STATE_FILE = "lab.json"


def validate_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise BadInputError(
            f"--name {name!r} is not a valid lab name.",
            hint="Use 1-32 lowercase letters, digits and '-', starting and ending with a "
            "letter or digit (e.g. 'default', 'test-2').",
        )
    return name


def labs_root(paths: Paths) -> Path:
    return paths.state / "lab"


def lab_dir(paths: Paths, name: str) -> Path:
    return labs_root(paths) / name


@dataclass
class LabState:
    name: str
    api_port: int
    etcd_port: int
    nodes: list[str]
    kubernetes_version: str
    kwok_version: str
    binaries: str
    created_at: float
    processes: list[ProcessRecord] = field(default_factory=list)
    # The real node's layout (realnode.NodeLayout.to_record()), when the lab has one.
    real_node: dict[str, Any] | None = None

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def to_json(self) -> str:
        data: dict[str, Any] = {k: v for k, v in self.__dict__.items() if k != "processes"}
        data["processes"] = [p.to_dict() for p in self.processes]
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LabState:
        data = json.loads(text)
        data["processes"] = [ProcessRecord.from_dict(p) for p in data.get("processes", [])]
        return cls(**data)


def kubeconfig_path(paths: Paths, name: str) -> Path:
    return lab_dir(paths, name) / "kubeconfig"


def save_state(paths: Paths, state: LabState) -> None:
    write_private_file(lab_dir(paths, state.name) / STATE_FILE, state.to_json())


def load_state(paths: Paths, name: str) -> LabState | None:
    """The recorded state, or None when there is no lab of that name or the record is
    unreadable (a run that crashed while writing it: treated as debris to clean up)."""
    try:
        return LabState.from_json((lab_dir(paths, name) / STATE_FILE).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def lab_names(paths: Paths) -> list[str]:
    root = labs_root(paths)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and NAME_PATTERN.fullmatch(p.name))


def remove_state(paths: Paths, name: str) -> None:
    shutil.rmtree(lab_dir(paths, name), ignore_errors=True)
