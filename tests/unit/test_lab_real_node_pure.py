"""The real node's pure parts: what it needs and says when a part is missing, its config files,
and the OCI archive written for images built here."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from libresh_cli.errors import BadInputError, ExitCode, PrerequisiteError
from libresh_cli.lab import imagebuild, realnode
from libresh_cli.lab.cluster import LabSpec, _check_spec
from libresh_cli.lab.pki import LabPki


def test_missing_parts_are_named_with_their_debian_packages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    present = {"containerd", "ctr", "iptables", "ip", "mount", "umount", "nsenter"}

    def which(cmd: str, path: str | None = None) -> str | None:
        return f"/usr/bin/{cmd}" if cmd in present else None

    monkeypatch.setattr("libresh_cli.lab.realnode.shutil.which", which)
    monkeypatch.setattr(realnode, "_cni_dir", lambda: None)
    with pytest.raises(PrerequisiteError) as raised:
        realnode.find_tools()
    error = raised.value
    assert error.exit_code == ExitCode.PREREQUISITE_MISSING
    assert int(error.exit_code) == 6
    assert "runc (Debian package runc)" in str(error)
    assert "mmdebstrap (Debian package mmdebstrap)" in str(error)
    assert "containernetworking-plugins" in str(error)
    assert error.hint == "Install them: apt-get install containernetworking-plugins mmdebstrap runc"


def test_a_real_node_may_be_the_only_node() -> None:
    _check_spec(LabSpec(nodes=0, real_node=True))
    with pytest.raises(BadInputError):
        _check_spec(LabSpec(nodes=0))
    assert LabSpec(nodes=2, real_node=True).all_node_names() == [
        "lab-node-1",
        "lab-node-2",
        realnode.NODE_NAME,
    ]


def _layout(tmp_path: Path) -> realnode.NodeLayout:
    return realnode.NodeLayout(tmp_path / "lab" / "node", "t", 7, 10250, "/sandbox/session")


def test_node_layout_names_and_record_round_trip(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    assert layout.subnet == "10.85.7.0/24"
    assert layout.node_ip == "10.85.7.1"
    assert len(layout.bridge) <= 15
    assert layout.bridge.startswith("lr-")
    assert layout.cgroup == "/sandbox/session/libresh-lab-t"
    assert realnode.NodeLayout.from_record(json.loads(json.dumps(layout.to_record()))) == layout


def test_containerd_uses_nothing_of_the_systems(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    tools = realnode.NodeTools(
        "/usr/bin/containerd", "/usr/bin/ctr", "/usr/sbin/runc", "/usr/lib/cni", "", "", ""
    )
    text = realnode.containerd_config(layout, tools)
    for system_path in ("/var/lib/containerd", "/run/containerd", "/etc/cni", "/opt/containerd"):
        assert system_path not in text
    assert f'address = "{layout.containerd_socket}"' in text
    assert f'Root = "{layout.containerd_dir / "runc"}"' in text
    assert "SystemdCgroup = false" in text
    assert "restrict_oom_score_adj = true" in text
    assert f'sandbox_image = "{imagebuild.PAUSE_REFERENCE}"' in text


def test_cni_is_bridge_host_local_and_portmap_under_the_lab(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    config = realnode.cni_config(layout)
    assert [p["type"] for p in config["plugins"]] == ["bridge", "portmap"]
    bridge = config["plugins"][0]
    assert bridge["bridge"] == layout.bridge
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["type"] == "host-local"
    assert bridge["ipam"]["dataDir"] == str(layout.cni_data_dir)


def test_kubelet_config(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    config = realnode.kubelet_config(layout, LabPki(tmp_path / "pki"), layout.certs)
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["failSwapOn"] is False
    assert config["cgroupRoot"] == layout.cgroup
    assert config["containerRuntimeEndpoint"] == f"unix://{layout.containerd_socket}"
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["imageGCHighThresholdPercent"] == 100  # built here, never pulled again
    for key in ("podLogsDir", "volumePluginDir"):
        assert config[key].startswith(str(layout.directory))


def test_apt_policy_and_sources_are_read() -> None:
    policy = (
        "bash:\n  Installed: (none)\n  Candidate: 5.2.15-2+b7\n  Version table:\n"
        "     5.2.15-2+b7 500\n"
        "libc6:amd64:\n  Installed: 2.36-9\n  Candidate: 2.36-9+deb12u14\n"
        "ghost:\n  Installed: (none)\n  Candidate: (none)\n"
    )
    assert imagebuild.parse_policy(policy) == {"bash": "5.2.15-2+b7", "libc6": "2.36-9+deb12u14"}
    deb822 = (
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb-src\nURIs: http://x\nSuites: bookworm\n"
    )
    assert imagebuild._deb822_lines(deb822, "bookworm") == [
        "deb http://mirror.example/debian bookworm main",
        "deb http://mirror.example/debian bookworm-updates main",
    ]
    listed = "deb http://m/debian bookworm main\ndeb http://m/debian trixie main\n# deb x y z\n"
    assert imagebuild._list_lines(listed, "bookworm") == ["deb http://m/debian bookworm main"]


def test_recipes_load() -> None:
    assert "debian" in imagebuild.recipe_names()
    recipe = imagebuild.load_recipe("debian")
    assert recipe.reference == "docker.io/library/debian:bookworm-slim"
    assert recipe.config["Cmd"] == ["bash"]
    assert len(recipe.digest) == 12


def test_oci_archive_is_a_consistent_image_layout(tmp_path: Path) -> None:
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as tar:
        (tmp_path / "hello").write_text("hi\n")
        tar.add(tmp_path / "hello", arcname="hello")
    archive = tmp_path / "image.tar"
    imagebuild.write_oci_archive(archive, "example.org/a/b:1.2", {"Cmd": ["sh"]}, layer)
    with tarfile.open(archive) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    (entry,) = index["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == "example.org/a/b:1.2"
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "1.2"
    manifest = json.loads(files[f"blobs/sha256/{entry['digest'].split(':')[1]}"])
    config = json.loads(files[f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"])
    assert config["config"] == {"Cmd": ["sh"]}
    (layer_entry,) = manifest["layers"]
    assert layer_entry["mediaType"] == imagebuild.OCI_LAYER
    assert config["rootfs"]["diff_ids"] == [layer_entry["digest"]]
    assert files[f"blobs/sha256/{layer_entry['digest'].split(':')[1]}"] == layer.read_bytes()


def test_a_lab_directory_too_long_for_the_kubelets_sockets_is_refused_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under a pytest-xdist worker's temporary directory containerd's socket fitted but the
    kubelet's pod-resources socket did not ("bind: invalid argument", the kubelet exited)."""
    monkeypatch.setattr(realnode, "_free_network", lambda: 1)
    monkeypatch.setattr(realnode, "_cgroup_parent", lambda: "/")
    fits = Path("/tmp/pytest-of-root/pytest-450/xdg0/xdg_state_home/libresh/lab/rn")
    assert realnode.choose_layout(fits, "rn", 1, (2, 3, 4)).directory == fits / "node"
    worker = Path("/tmp/pytest-of-root/pytest-454/popen-gw0/xdg0/xdg_state_home/libresh/lab/rn")
    with pytest.raises(PrerequisiteError) as refused:
        realnode.choose_layout(worker, "rn", 1, (2, 3, 4))
    message = str(refused.value)
    assert "kubelet/device-plugins/kubelet.sock" in message
    assert "at most 107" in message
    assert "at most 66 characters" in message  # 107 - len("/node/kubelet/device-plugins/...")
