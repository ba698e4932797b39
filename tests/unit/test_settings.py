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


def test_every_folder_made_for_a_private_file_is_0700(tmp_path: Path) -> None:
    """~/.config/libresh/kubeconfigs: mkdir(parents=True, mode=...) would leave the parents 0755
    (issue 14, finding 13)."""
    target = tmp_path / "config" / "libresh" / "kubeconfigs" / "home.yaml"
    write_private_file(target, "x")
    for folder in (target.parent, target.parent.parent, target.parent.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_a_planted_symlink_is_never_written_through(tmp_path: Path) -> None:
    """The temporary file's name is not predictable and is made with O_EXCL: a symlink planted
    where the old writer put its temporary file (.NAME.tmp) is left alone, and so is what it
    points at; a symlink planted at the target itself is replaced, not followed."""
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    folder = tmp_path / "kubeconfigs"
    folder.mkdir(mode=0o700)
    (folder / ".home.yaml.tmp").symlink_to(victim)
    (folder / "home.yaml").symlink_to(victim)
    write_private_file(folder / "home.yaml", "secret")
    assert victim.read_text() == "untouched"
    assert not (folder / "home.yaml").is_symlink()
    assert (folder / "home.yaml").read_text() == "secret"
    leftovers = sorted(p.name for p in folder.iterdir())
    assert leftovers == [".home.yaml.tmp", "home.yaml"]  # no temporary file left behind
