"""Where libresh keeps its files (XDG base directories) and the LIBRESH_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

APP_DIR = "libresh"


def _xdg(env: Mapping[str, str], var: str, default: str) -> Path:
    # The XDG spec says relative values are invalid and must be ignored.
    value = env.get(var, "")
    if value and Path(value).is_absolute():
        return Path(value) / APP_DIR
    return Path(env.get("HOME", str(Path.home()))) / default / APP_DIR


@dataclass(frozen=True)
class Paths:
    """The four XDG directories, already suffixed with `libresh`."""

    config: Path
    data: Path
    state: Path
    cache: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Paths:
        env = os.environ if env is None else env
        return cls(
            config=_xdg(env, "XDG_CONFIG_HOME", ".config"),
            data=_xdg(env, "XDG_DATA_HOME", ".local/share"),
            state=_xdg(env, "XDG_STATE_HOME", ".local/state"),
            cache=_xdg(env, "XDG_CACHE_HOME", ".cache"),
        )


def bootstrap_file(name: str) -> Path:
    """A file of bootstrap/ (what runs on hosts and in Jobs): the wheel carries the folder as
    libresh_cli/_bootstrap, a checkout has it at the top."""
    from importlib import resources

    packaged = Path(str(resources.files("libresh_cli"))) / "_bootstrap" / name
    if packaged.exists():
        return packaged
    return Path(__file__).resolve().parents[1] / "bootstrap" / name


def write_private_file(path: Path, content: str | bytes) -> None:
    """Write a file only its owner can read (kubeconfigs, keys), creating parent directories.

    The mode is set at creation so the content is never readable by others, not even briefly.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = content.encode() if isinstance(content, str) else content
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply when the file already existed
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)
