from __future__ import annotations

import stat
from pathlib import Path

from libresh_cli.settings import Paths, write_private_file


def test_xdg_directories_with_and_without_variables() -> None:
    paths = Paths.from_env({"HOME": "/home/u", "XDG_STATE_HOME": "/s", "XDG_CACHE_HOME": "rel"})
    assert paths.state == Path("/s/libresh")
    assert paths.cache == Path("/home/u/.cache/libresh")  # relative values are ignored (spec)
    assert paths.config == Path("/home/u/.config/libresh")
    assert paths.data == Path("/home/u/.local/share/libresh")


def test_private_files_are_0600_even_over_a_readable_file(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "kubeconfig"
    target.parent.mkdir()
    target.write_text("old")
    target.chmod(0o644)
    write_private_file(target, "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    write_private_file(tmp_path / "fresh" / "key", b"\x00\x01")
    assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o700
