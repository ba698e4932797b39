"""A real Kubernetes control plane (the lab) shared by the integration tests of a session.

The lab's binaries are built (or found in the cache) once, before any test runs, so the
cold build of a fresh machine is not counted against a test's timeout.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from libresh_cli.errors import ConflictError, LibreshError
from libresh_cli.kube.client import KubeClient
from libresh_cli.kube.connection import KubeTarget
from libresh_cli.lab import realnode
from libresh_cli.lab.binaries import ensure_binaries
from libresh_cli.lab.cluster import LabSpec, lab_down, lab_up
from libresh_cli.lab.state import LabState, kubeconfig_path
from libresh_cli.progress import SilentReporter
from libresh_cli.settings import Paths
from tests.integration.keycloak import Keycloak, running_keycloak
from tests.workers import REAL_NODE_SUFFIX, group_of

INTEGRATION_DIR = Path(__file__).parent
XDG_PRIVATE = ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME")


class PrintingReporter:
    def __init__(self, config: pytest.Config) -> None:
        self.terminal = config.get_terminal_writer()

    def step(self, message: str) -> None:
        self.terminal.line(f"[lab] {message}")

    def done(self, message: str) -> None:
        self.terminal.line(f"[lab] done: {message}")

    def warn(self, message: str) -> None:
        self.terminal.line(f"[lab] warning: {message}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
        uses = getattr(item, "fixturenames", ())
        # tests/workers.py names groups from node ids alone: its rules must hold here.
        wanted = "real-node" if "real_lab" in uses else "keycloak" if "keycloak" in uses else None
        if wanted is not None and group_of(item.nodeid) != wanted:
            raise pytest.UsageError(
                f"{item.nodeid} uses the fixture of the {wanted} group but its module is not "
                f"in it: name the module *{REAL_NODE_SUFFIX} (real node) or add it to "
                "KEYCLOAK_MODULES in tests/workers.py."
            )
    uses_the_real_node = [("real_lab" in getattr(i, "fixturenames", ())) for i in items]
    if config.getoption("numprocesses", None) or hasattr(config, "workerinput"):
        # In workers the real-node tests first (their order kept): the longest group (~20
        # min) starts at once, while the other workers take everything else.
        order = {id(item): not real for item, real in zip(items, uses_the_real_node, strict=True)}
    else:
        # In one process they come last and together: the session's real lab (real_lab,
        # below) is up only while they run, not idling through every other module.
        order = {id(item): real for item, real in zip(items, uses_the_real_node, strict=True)}
    items.sort(key=lambda item: order[id(item)])


def pytest_collection_finish(session: pytest.Session) -> None:
    if any(item.get_closest_marker("integration") for item in session.items):
        try:
            ensure_binaries(Paths.from_env(), PrintingReporter(session.config))
        except LibreshError as error:  # e.g. no Go: say so plainly and stop
            pytest.exit(f"Cannot get the lab binaries: {error}", returncode=1)


@dataclass
class Lab:
    paths: Paths
    state: LabState
    kubeconfig: Path

    def cli_env(self) -> dict[str, str]:
        """Environment under which the `libresh` command sees this lab."""
        return {**os.environ, "XDG_STATE_HOME": str(self.paths.state.parent), "NO_COLOR": "1"}

    def kube(self) -> KubeClient:
        return KubeClient.connect(KubeTarget(self.kubeconfig))

    def official_client(self) -> k8s.ApiClient:
        """The kubernetes Python client, to check what libresh did with an independent client."""
        client: k8s.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig)
        )
        return client


LAB_TOKEN = secrets.token_hex(16)


@pytest.fixture(scope="session")
def lab_paths(tmp_path_factory: pytest.TempPathFactory) -> Paths:
    """Own state, config and data directories; the user's cache (built binaries) is shared."""
    root = tmp_path_factory.mktemp("xdg")
    env = {**os.environ, **{var: str(root / var.lower()) for var in XDG_PRIVATE}}
    return Paths.from_env(env)


@pytest.fixture(scope="session")
def lab(lab_paths: Paths) -> Iterator[Lab]:
    # A bearer token the API server accepts too: kubeconfigs with a token or an exec plugin
    # are tested against it (tests/integration/test_kube_adapter.py).
    spec = LabSpec(name="pytest", nodes=2, join_token=LAB_TOKEN)
    state, _ = lab_up(lab_paths, spec, SilentReporter())
    try:
        yield Lab(lab_paths, state, kubeconfig_path(lab_paths, "pytest"))
    finally:
        lab_down(lab_paths, "pytest", SilentReporter())


@pytest.fixture(scope="session")
def keycloak(request: pytest.FixtureRequest) -> Iterator[Keycloak]:
    """One Keycloak for the whole session (its start is most of the identity tests' time);
    here, not in a test module, so that every module using it shares that one process."""
    with running_keycloak(Paths.from_env()) as server:
        writer = request.config.get_terminal_writer()
        writer.line(
            f"[keycloak] ready in {server.started_in:.0f} s, RSS "
            f"{server.rss_bytes() / 2**20:.0f} MiB"
        )
        yield server


REAL_LAB_NAME = "rn"  # short: the kubelet's sockets under the lab must fit in 108 bytes


def up_when_the_machine_is_free(paths: Paths, spec: LabSpec, timeout: float = 900) -> LabState:
    """lab_up, waiting while another lab's real node runs here (a machine has one at a time:
    test sessions running side by side take turns instead of failing)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return lab_up(paths, spec, SilentReporter())[0]
        except ConflictError:
            if realnode.running_kube_proxy() is None or time.monotonic() > deadline:
                raise
            time.sleep(2)


@pytest.fixture(scope="session")
def real_lab() -> Iterator[Lab]:
    """A lab whose only node is the real one (every pod runs in containerd), shared by the
    session's real-node modules: a machine runs one real node at a time, so they could not
    overlap anyway, and each `lab up` costs its start and its add-ons' (~20 s). Each module
    uses its own namespaces and instance names; a test that takes this lab down brings it back
    up and updates `state` (test_lab_real_node.py)."""
    if os.geteuid() != 0:
        pytest.skip("a real node needs root")
    # Its own short state directory: the kubelet's sockets go under the lab's, and a Unix
    # socket's path has at most 107 bytes (a worker's pytest directory is too deep for them).
    root = Path(tempfile.mkdtemp(prefix="lrn-", dir="/tmp"))
    paths = Paths.from_env({**os.environ, **{v: str(root / v.lower()) for v in XDG_PRIVATE}})
    spec = LabSpec(name=REAL_LAB_NAME, nodes=0, real_node=True)
    state = up_when_the_machine_is_free(paths, spec)
    shared = Lab(paths, state, kubeconfig_path(paths, REAL_LAB_NAME))
    try:
        yield shared
    finally:
        lab_down(paths, REAL_LAB_NAME, SilentReporter())
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def real_storage(real_lab: Lab) -> Path:
    """Backups of the real lab go to a directory of this machine (the real node's path
    storage), set once for the session, as a cluster has one storage (moving it is tested on
    the kwok lab: test_backup_lab.py). test_lab_real_node.py takes the lab down and up before
    any module asks for this."""
    where = Path(tempfile.mkdtemp(prefix="backups-", dir=real_lab.paths.state.parent))
    command = [
        str(Path(sys.executable).parent / "libresh"), "--kubeconfig", str(real_lab.kubeconfig),
        "backup", "storage", "set", "--path", str(where), "--node", realnode.NODE_NAME,
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=600,
        stdin=subprocess.DEVNULL, env={**real_lab.cli_env(), "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Backups go to {where} on node {realnode.NODE_NAME}" in done.stdout + done.stderr
    return where


@pytest.fixture
def kube(lab: Lab) -> Iterator[KubeClient]:
    with lab.kube() as client:
        yield client


@pytest.fixture
def namespace(kube: KubeClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kube.delete("v1", "Namespace", name)
