"""The lab's pure parts: names, state records, command lines, kubeconfig, PKI, Go version."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from libresh_cli.errors import BadInputError, PrerequisiteError
from libresh_cli.lab import binaries, components, state
from libresh_cli.lab.binaries import LabBinaries
from libresh_cli.lab.components import LabLayout
from libresh_cli.lab.pki import create_pki
from libresh_cli.lab.processes import ProcessRecord, is_alive, reap, start_daemon, stop_all
from libresh_cli.settings import Paths


@pytest.mark.parametrize("name", ["default", "a", "ci-2", "x" * 32])
def test_valid_lab_names(name: str) -> None:
    assert state.validate_name(name) == name


@pytest.mark.parametrize("name", ["", "Default", "-a", "a-", "a_b", "x" * 33, "../etc"])
def test_invalid_lab_names(name: str) -> None:
    with pytest.raises(BadInputError, match="not a valid lab name"):
        state.validate_name(name)


def test_state_round_trip_and_listing(xdg: Paths) -> None:
    lab = state.LabState(
        name="t",
        api_port=1,
        etcd_port=2,
        nodes=["n1"],
        kubernetes_version="1.34.4",
        kwok_version="0.8.0",
        binaries="/b",
        created_at=time.time(),
        processes=[ProcessRecord("etcd", 42, "/b/bin/x", "/l/etcd.log")],
    )
    state.save_state(xdg, lab)
    path = state.lab_dir(xdg, "t") / state.STATE_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert state.load_state(xdg, "t") == lab
    assert state.lab_names(xdg) == ["t"]
    path.write_text("{half written")
    assert state.load_state(xdg, "t") is None  # debris, cleaned up by the next `lab up`


def _layout(tmp_path: Path) -> LabLayout:
    return LabLayout(tmp_path, api_port=16443, etcd_port=23790, etcd_peer_port=23800)


def test_component_command_lines(tmp_path: Path) -> None:
    bins = LabBinaries(tmp_path / "cache")
    layout = _layout(tmp_path)
    etcd = components.etcd_command(bins, layout)
    assert etcd[:2] == [str(bins.controlplane), "etcd"]
    # TLS with client certificates, clients and peers (issue 14, finding 19)
    assert "--listen-client-urls=https://127.0.0.1:23790" in etcd
    assert "--listen-peer-urls=https://127.0.0.1:23800" in etcd
    assert "--client-cert-auth=true" in etcd and "--peer-client-cert-auth=true" in etcd
    assert f"--trusted-ca-file={layout.pki.ca_cert}" in etcd
    api = components.apiserver_command(bins, layout)
    assert "--secure-port=16443" in api and "--bind-address=127.0.0.1" in api
    assert "--etcd-servers=https://127.0.0.1:23790" in api
    assert f"--etcd-certfile={layout.pki.etcd_client_cert}" in api
    assert "--authorization-mode=Node,RBAC" in api
    for command in (
        components.controller_manager_command(bins, layout),
        components.scheduler_command(bins, layout),
    ):
        assert f"--kubeconfig={layout.kubeconfig}" in command
        assert "--secure-port=0" in command
    kwok = components.kwok_command(bins, layout)
    assert kwok[0] == str(bins.kwok)
    assert "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake" in kwok
    # libresh's own stages (failing pods, the backup runner's stand-in) come along with kwok's
    ours = [a.split("=", 1)[1] for a in kwok if "/lab/stages/" in a]
    assert [Path(p).name for p in ours] == ["libresh-backup-runner.yaml", "libresh-fail.yaml"]
    assert all(Path(p).is_file() for p in ours)


def test_failure_stages_select_the_documented_label() -> None:
    stages_file = Path(components.__file__).parent / "stages" / "libresh-fail.yaml"
    stages = list(yaml.safe_load_all(stages_file.read_text()))
    assert [s["metadata"]["name"] for s in stages] == [
        "libresh-pod-never-ready",
        "libresh-job-pod-fail",
    ]
    for stage in stages:
        keys = [e["key"] for e in stage["spec"]["selector"]["matchExpressions"]]
        assert f'.metadata.labels["{components.FAILING_POD_LABEL}"]' in keys
        assert stage["spec"]["weight"] > 0  # beats kwok's unweighted default stages


def test_nodes_are_managed_by_kwok_and_schedulable() -> None:
    node = components.node_manifest("lab-node-1")
    assert node["metadata"]["annotations"][components.KWOK_NODE_ANNOTATION] == "fake"
    assert "taints" not in node["spec"]  # ordinary workloads land on them


def test_kubeconfig_document_and_pki(tmp_path: Path) -> None:
    pki = create_pki(tmp_path / "pki", "t")
    for key in (pki.ca_key, pki.serving_key, pki.admin_key, pki.service_account_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    admin = x509.load_pem_x509_certificate(pki.admin_cert.read_bytes())
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "system:masters"
    )
    serving = x509.load_pem_x509_certificate(pki.serving_cert.read_bytes())
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    document = components.kubeconfig_document(
        "t",
        "https://127.0.0.1:1",
        pki.ca_cert.read_bytes(),
        pki.admin_cert.read_bytes(),
        pki.admin_key.read_bytes(),
    )
    assert document["current-context"] == "libresh-lab-t"
    assert document["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:1"


@pytest.mark.parametrize(
    ("text", "version"), [("go1.26.8", (1, 26)), ("go1.24", (1, 24)), ("go1.24rc1", (1, 24))]
)
def test_parse_go_version(text: str, version: tuple[int, int]) -> None:
    assert binaries.parse_go_version(text) == version


def test_without_go_the_error_says_how_to_get_binaries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(PrerequisiteError) as raised:
        binaries.require_go()
    assert "Go is not installed" in raised.value.message
    assert "libresh lab build" in str(raised.value.hint)
    assert binaries.BIN_DIR_VARIABLE in str(raised.value.hint)


def test_bin_dir_variable_must_hold_the_binaries(xdg: Paths, tmp_path: Path) -> None:
    with pytest.raises(PrerequisiteError, match="does not hold the lab binaries"):
        binaries.find_binaries(xdg, {binaries.BIN_DIR_VARIABLE: str(tmp_path)})


def test_cache_is_keyed_by_versions_and_recipe(xdg: Paths) -> None:
    key = binaries.cache_dir(xdg).name
    assert f"k8s-v{binaries.KUBERNETES_VERSION}" in key and f"kwok-v{binaries.KWOK_VERSION}" in key
    assert key.endswith(binaries.recipe_digest())
    assert binaries.find_binaries(xdg, {}) is None  # an empty cache holds nothing


def test_version_ldflags_stamp_the_kubernetes_version() -> None:
    flags = binaries.version_ldflags()
    assert f"gitVersion=v{binaries.KUBERNETES_VERSION}" in flags
    assert "gitMajor=1" in flags and "gitMinor=34" in flags


def test_lab_nodes_carry_the_label_commands_recognise_a_lab_by() -> None:
    from libresh_cli.kube.simulated import LAB_NODE_LABEL

    assert components.node_manifest("lab-node-1")["metadata"]["labels"][LAB_NODE_LABEL] == "true"


def test_lab_nodes_carry_the_annotation_commands_recognise_simulation_by() -> None:
    from libresh_cli.kube.simulated import SIMULATED

    key, value = SIMULATED
    assert key == components.KWOK_NODE_ANNOTATION
    assert components.node_manifest("lab-node-1")["metadata"]["annotations"][key] == value


def test_a_daemon_that_ended_says_how(tmp_path: Path) -> None:
    """What `lab up` reports of a daemon that exited while starting: its exit code, or the
    signal that killed it, even after other processes were started meanwhile."""
    env = {"PATH": "/usr/bin:/bin"}
    failed = start_daemon("failed", ["sh", "-c", "exit 3"], tmp_path / "failed.log", env)
    killed = start_daemon("killed", ["sleep", "60"], tmp_path / "killed.log", env)
    assert reap(killed.pid) is None and is_alive(killed)  # still running: nothing to say
    os.kill(killed.pid, signal.SIGKILL)
    subprocess.run(["true"], check=True)  # another child: its Popen reaps forgotten ones
    assert reap(failed.pid, wait=5) == "exit code 3"
    assert reap(killed.pid, wait=5) == "killed by SIGKILL"
    assert not is_alive(killed)
    assert reap(killed.pid) is None  # collected once


def test_stopping_daemons_collects_the_ones_that_died_already(tmp_path: Path) -> None:
    """A daemon killed from outside (a crash, another `lab down`) is a zombie of the process
    that started it until collected: stopping collects it too."""
    env = {"PATH": "/usr/bin:/bin"}
    dead = start_daemon("dead", ["sleep", "60"], tmp_path / "dead.log", env)
    os.kill(dead.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{dead.pid}/stat").read_text().split(")")[-1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the killed daemon never became a zombie"
        time.sleep(0.01)
    assert stop_all([dead], grace=1) == []
    assert not Path(f"/proc/{dead.pid}").exists()


def test_containerd_that_died_while_starting_is_started_once_more() -> None:
    from libresh_cli.lab import realnode
    from libresh_cli.lab.cluster import containerd_answers
    from libresh_cli.progress import RecordingReporter

    first = ProcessRecord("containerd", 101, "/usr/bin/containerd", "/tmp/c.log")
    second = ProcessRecord("containerd", 102, "/usr/bin/containerd", "/tmp/c.log")
    lab = state.LabState("l", 1, 2, [], "1.34.4", "0.8.0", "/b", 0.0, processes=[first])
    dead = {101, 103}
    maybe_running = {104}

    def wait(record: ProcessRecord) -> None:
        if record.pid in dead:
            raise realnode.ContainerdDiedError(
                "containerd exited while starting (exit code 1).", ended="exit code 1"
            )
        if record.pid in maybe_running:
            raise realnode.ContainerdDiedError("containerd exited while starting.")

    def start_again() -> ProcessRecord:
        lab.processes.append(second)
        return second

    reporter = RecordingReporter()
    containerd_answers(lab, first, start_again, wait, reporter)
    assert lab.processes == [second]  # the dead one would make the lab look crashed
    assert reporter.events == [
        ("warn", "containerd exited while starting (exit code 1). Starting it once more.")
    ]
    # A second death is the error.
    third = ProcessRecord("containerd", 103, "/usr/bin/containerd", "/tmp/c.log")
    dead.add(102)
    with pytest.raises(realnode.ContainerdDiedError):
        containerd_answers(lab, second, lambda: third, wait, RecordingReporter())
    # Not seen to end (no exit status): it may still hold containerd's root; no second start.
    unknown = ProcessRecord("containerd", 104, "/usr/bin/containerd", "/tmp/c.log")
    started_again: list[ProcessRecord] = []

    def start_fourth() -> ProcessRecord:
        started_again.append(third)
        return third

    with pytest.raises(realnode.ContainerdDiedError):
        containerd_answers(lab, unknown, start_fourth, wait, RecordingReporter())
    assert started_again == []
