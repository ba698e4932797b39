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


def make_private_dirs(directory: Path) -> None:
    """Create `directory` and every missing parent 0700 (`mkdir(parents=True, mode=...)` gives
    the mode to the last one only: the parents would be 0755)."""
    missing = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)


def write_private_file(path: Path, content: str | bytes) -> None:
    """Write a file only its owner can read (kubeconfigs, keys), creating parent directories
    0700.

    The temporary file has a fresh name made with O_EXCL and mode 0600 (mkstemp): a file or
    symlink planted under a predictable name is never written through. The final rename
    replaces `path` itself, even when `path` is a symlink.
    """
    import tempfile

    make_private_dirs(path.parent)
    data = content.encode() if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
