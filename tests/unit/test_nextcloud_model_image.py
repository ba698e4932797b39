"""The Nextcloud model image's recipe (libresh_cli/lab/images/nextcloud-model): one root
filesystem under the references apps/nextcloud/app.yaml uses, and how one archive carries
them all."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import yaml

from libresh_cli.lab import imagebuild

APP_YAML = Path(__file__).parents[2] / "apps" / "nextcloud" / "app.yaml"


def test_the_model_is_imported_under_app_yaml_s_references_of_three_consecutive_majors() -> None:
    recipe = imagebuild.load_recipe("nextcloud-model")
    versions = yaml.safe_load(APP_YAML.read_text())["versions"]
    image_of = {v["version"]: v["image"] for v in versions}
    tagged = recipe.tagged_configs(recipe.config)
    modelled = {}
    for reference, config in tagged:
        env = dict(line.split("=", 1) for line in config["Env"])
        version = env["NEXTCLOUD_VERSION"]
        assert image_of[version] == reference, (version, reference)
        modelled[int(version.split(".")[0])] = version
    assert sorted(modelled) == [29, 30, 31]
    # The newest release of each major: the one libresh's upgrade path visits.
    for major, version in modelled.items():
        newest = max(
            (v for v in image_of if v.startswith(f"{major}.")),
            key=lambda v: tuple(int(p) for p in v.split(".")),
        )
        assert version == newest
    assert recipe.config["Entrypoint"] == ["/entrypoint.sh"]
    assert recipe.config["Cmd"] == ["apache2-foreground"]


def test_another_tag_replaces_the_env_lines_it_names() -> None:
    recipe = imagebuild.ImageRecipe(
        name="x",
        reference="example/x:1",
        suite="bookworm",
        variant="minbase",
        packages=(),
        config={"Env": ["PATH=/bin", "V=1"], "Cmd": ["x"]},
        also=(imagebuild.ImageTag("example/x:2", ("V=2",)),),
    )
    tagged = recipe.tagged_configs(recipe.config)
    assert tagged == [
        ("example/x:1", {"Env": ["PATH=/bin", "V=1"], "Cmd": ["x"]}),
        ("example/x:2", {"Env": ["PATH=/bin", "V=2"], "Cmd": ["x"]}),
    ]


def test_one_archive_holds_every_reference_over_one_layer(tmp_path: Path) -> None:
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as tar:
        tar.add(__file__, arcname="file")
    output = tmp_path / "image.tar"
    imagebuild.write_oci_archive(
        output,
        "example/x:1",
        {"Env": ["V=1"]},
        layer,
        more=[("example/x:2", {"Env": ["V=2"]})],
    )
    with tarfile.open(output) as archive:
        names = archive.getnames()
        index = json.loads(archive.extractfile("index.json").read())  # type: ignore[union-attr]
        manifests = [
            json.loads(archive.extractfile(f"blobs/sha256/{m['digest'][7:]}").read())  # type: ignore[union-attr]
            for m in index["manifests"]
        ]
        configs = [
            json.loads(archive.extractfile(f"blobs/sha256/{m['config']['digest'][7:]}").read())  # type: ignore[union-attr]
            for m in manifests
        ]
    assert [m["annotations"]["io.containerd.image.name"] for m in index["manifests"]] == [
        "example/x:1",
        "example/x:2",
    ]
    assert {m["layers"][0]["digest"] for m in manifests} == {manifests[0]["layers"][0]["digest"]}
    assert [c["config"]["Env"] for c in configs] == [["V=1"], ["V=2"]]
    assert len(names) == len(set(names))  # the layer once, every blob once
    assert sum(1 for n in names if n.startswith("blobs/")) == 5
