"""The real node's image recipes (libresh_cli/lab/images/*): what each says it stands for, and
how a recipe's users, files and commands reach mmdebstrap."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from libresh_cli.apps.render import SERVICES_DIR
from libresh_cli.backup.jobs import RESTIC_IMAGE, RUNNER_IMAGE
from libresh_cli.lab import imagebuild


def test_every_image_libresh_runs_has_a_recipe() -> None:
    references = {imagebuild.load_recipe(n).reference for n in imagebuild.recipe_names()}
    services = "".join(p.read_text() for p in SERVICES_DIR.glob("*.yaml"))
    used = {RESTIC_IMAGE, RUNNER_IMAGE}
    lines = services.splitlines()
    used |= {line.split("image:", 1)[1].strip() for line in lines if "image:" in line}
    assert used <= references, used - references


def test_postgres_and_redis_keep_the_alpine_ids() -> None:
    postgres = imagebuild.load_recipe("postgres")
    redis = imagebuild.load_recipe("redis")
    assert [(u.name, u.uid, u.gid) for u in postgres.users] == [("postgres", 70, 70)]
    assert [(u.name, u.uid, u.gid) for u in redis.users] == [("redis", 999, 1000)]
    assert postgres.config["Entrypoint"] == ["docker-entrypoint.sh"]
    assert postgres.config["StopSignal"] == "SIGINT"
    assert "PGDATA=/var/lib/postgresql/data" in postgres.config["Env"]
    assert imagebuild.load_recipe("restic").config["Entrypoint"] == ["/usr/bin/restic"]


def test_users_and_files_go_in_before_the_packages_and_commands_after() -> None:
    recipe = imagebuild.load_recipe("postgres")
    before = imagebuild.before_packages_hooks(recipe)
    assert before[0] == (
        'echo postgres:x:70: >> "$1/etc/group" && '
        'echo postgres:x:70:70::/var/lib/postgresql:/bin/sh >> "$1/etc/passwd"'
    )
    entrypoint = recipe.folder / "docker-entrypoint.sh"
    assert f'install -D -m 0755 {entrypoint} "$1"/usr/local/bin/docker-entrypoint.sh' in before
    after = imagebuild.after_packages_hooks(recipe)
    assert after[-1] == "chroot \"$1\" sh -ec 'id -u postgres | grep -qx 70'"
    if shutil.which("mmdebstrap"):
        command = imagebuild.mmdebstrap_command(recipe, Path("/o.tar"), Path("/p.tsv"))
        assert f"--essential-hook={before[0]}" in command
        assert f"--customize-hook={after[-1]}" in command


def test_a_file_of_the_recipe_is_part_of_its_cache_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A copy of the package's images folder whose redis entrypoint differs by one byte.
    images = tmp_path / "lab" / "images"
    shutil.copytree(Path(imagebuild.__file__).parent / "images", images)
    (tmp_path / "lab" / "__init__.py").write_text("")
    before = imagebuild.load_recipe("redis").digest
    monkeypatch.setattr(imagebuild, "__package__", "lab")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert imagebuild.load_recipe("redis").digest == before
    entrypoint = images / "redis" / "docker-entrypoint.sh"
    entrypoint.write_text(entrypoint.read_text() + "\n")
    assert imagebuild.load_recipe("redis").digest != before


def test_the_vaultwarden_model_stands_for_versions_of_the_catalog() -> None:
    """Each reference of the model is an image apps/vaultwarden/app.yaml lists, and the model's
    LIBRESH_MODEL_VERSION (what /vaultwarden behaves as) is that reference's tag."""
    recipe = imagebuild.load_recipe("vaultwarden-model")
    app = yaml.safe_load((Path(__file__).parents[2] / "apps/vaultwarden/app.yaml").read_text())
    listed = {entry["image"] for entry in app["versions"]}
    for reference, config in recipe.tagged_configs(recipe.config):
        assert reference in listed
        assert f"LIBRESH_MODEL_VERSION={reference.rsplit(':', 1)[1]}" in config["Env"]
