"""lab up / down / status: bring the daemons up in order, check them, take them down."""

from __future__ import annotations

import dataclasses
import functools
import os
import ssl
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from libresh_cli.errors import BadInputError, ConflictError, LibreshError, OperationFailedError
from libresh_cli.kube.client import KubeClient, wait_for
from libresh_cli.kube.connection import KubeTarget
from libresh_cli.kube.nodes import ready_names, wait_nodes_ready
from libresh_cli.lab import components, nodeaddons, realnode, state
from libresh_cli.lab.binaries import (
    KUBERNETES_VERSION,
    KWOK_VERSION,
    AddonBinaries,
    LabBinaries,
    cache_dir,
    ensure_addons,
    ensure_binaries,
    find_binaries,
)
from libresh_cli.lab.components import LabLayout
from libresh_cli.lab.pki import LabPki, create_pki
from libresh_cli.lab.processes import (
    ProcessRecord,
    free_ports,
    is_alive,
    reap,
    require_free_port,
    start_daemon,
    stop_all,
)
from libresh_cli.progress import Reporter
from libresh_cli.settings import Paths, make_private_dirs, write_private_file

MAX_NODES = 100
# Stopped in this order: the API's clients, then the API server (which still needs etcd to
# shut down cleanly), then etcd.
STOP_ORDER = (
    ("kwok", "kube-scheduler", "kube-controller-manager"),
    ("kube-apiserver",),
    ("etcd",),
)
ETCD_TIMEOUT = 30.0
APISERVER_TIMEOUT = 90.0
NODES_TIMEOUT = 90.0
ADDONS_TIMEOUT = 60.0


@dataclass(frozen=True)
class LabSpec:
    name: str = "default"
    nodes: int = 1
    api_port: int | None = None
    # For the k3s stand-in of the bootstrap tests: serve on all addresses of a test host, with
    # the names k3s' tls-san would add, and nodes named as k3s names them.
    bind_address: str = "127.0.0.1"
    extra_names: tuple[str, ...] = ()
    node_names: tuple[str, ...] = ()
    join_token: str | None = field(default=None, repr=False)
    # A real node (kubelet + containerd, realnode.py) besides the `nodes` simulated ones.
    real_node: bool = False

    def names_of_nodes(self) -> list[str]:
        """The simulated nodes' names."""
        return list(self.node_names) or [f"lab-node-{i}" for i in range(1, self.nodes + 1)]

    def all_node_names(self) -> list[str]:
        return [*self.names_of_nodes(), *([realnode.NODE_NAME] if self.real_node else [])]


@dataclass
class LabStatus:
    name: str
    health: str  # running | degraded (a process died) | broken (no readable record) | stopped
    server: str | None = None
    kubeconfig: str | None = None
    processes: dict[str, bool] = field(default_factory=dict)
    nodes_ready: int | None = None
    nodes: int | None = None
    kubernetes_version: str | None = None
    kwok_version: str | None = None
    real_node: str | None = None

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def plan_lab_up(paths: Paths, spec: LabSpec) -> dict[str, object]:
    """What `lab up` would do, for --dry-run: nothing is started or written."""
    name = state.validate_name(spec.name)
    _check_spec(spec)
    found = find_binaries(paths)
    previous = state.load_state(paths, name)
    return {
        "name": name,
        "previous_run": "running (would refuse)"
        if previous and previous.processes and all(is_alive(p) for p in previous.processes)
        else ("crashed (would be cleaned up)" if state.lab_dir(paths, name).exists() else None),
        "binaries": str(found.root) if found else f"to build with Go into {cache_dir(paths)}",
        "processes": [c for tier in reversed(STOP_ORDER) for c in sorted(tier)]
        + (list(reversed(realnode.NODE_COMPONENTS)) if spec.real_node else []),
        "api_server": f"https://127.0.0.1:{spec.api_port}"
        if spec.api_port
        else "https://127.0.0.1:<a free port>",
        "nodes": spec.all_node_names(),
        "state": str(state.lab_dir(paths, name)),
    }


def lab_up(paths: Paths, spec: LabSpec, reporter: Reporter) -> tuple[state.LabState, bool]:
    """Start the lab; returns its state and whether it was already running as asked (then
    nothing is done: re-running `lab up` is safe)."""
    name = state.validate_name(spec.name)
    _check_spec(spec)
    running = _running_lab(paths, name)
    if running is not None:
        _require_same_spec(running, spec)
        return running, True
    # A real node's parts are checked first: a missing package is said before anything starts.
    tools = realnode.find_tools() if spec.real_node else None
    _clear_debris(paths, name, reporter)
    binaries = ensure_binaries(paths, reporter)
    if tools is None:
        return _start_lab(paths, name, spec, binaries, None, reporter), False
    addons = ensure_addons(paths, reporter)
    images = realnode.node_images(paths, binaries, reporter)
    # Two labs starting a real node at once would each see no other: one starts at a time.
    with realnode.one_start_at_a_time():
        _require_no_other_real_node()
        parts = NodeParts(tools, binaries, addons, images)
        return _start_lab(paths, name, spec, binaries, parts, reporter), False


def _start_lab(
    paths: Paths,
    name: str,
    spec: LabSpec,
    binaries: LabBinaries,
    parts: NodeParts | None,
    reporter: Reporter,
) -> state.LabState:
    layout = _choose_layout(paths, name, spec)
    node = _choose_node(layout, name) if parts is not None else None
    if node is not None:
        layout = _serving_the_node(layout, node)
    lab = state.LabState(
        name=name,
        api_port=layout.api_port,
        etcd_port=layout.etcd_port,
        nodes=spec.all_node_names(),
        kubernetes_version=KUBERNETES_VERSION,
        kwok_version=KWOK_VERSION,
        binaries=str(binaries.root),
        created_at=time.time(),
        # Recorded before anything is made, so that a crash is cleaned up.
        real_node=node.to_record() if node else None,
    )
    # containerd takes the node's images while the control plane starts.
    importing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lab-images")
    try:
        runtime = None
        if parts is not None and node is not None:
            runtime = _start_runtime(paths, lab, layout, parts, node, importing, reporter)
        _start(paths, lab, layout, binaries, reporter)
        if parts is not None and node is not None and runtime is not None:
            runtime.result()
            _start_real_node(paths, lab, layout, parts, node, reporter)
        _wait_for_nodes(layout, lab, reporter)
    except BaseException:
        # Nothing half-up is left behind: a failed or interrupted start is undone entirely.
        stop_lab_processes(lab, grace=3.0)  # an import under way fails with its containerd
        _remove_lab_dir(paths, name)
        raise
    finally:
        importing.shutdown(wait=False, cancel_futures=True)
    return lab


def _check_spec(spec: LabSpec) -> None:
    least = 0 if spec.real_node else 1
    if not least <= spec.nodes <= MAX_NODES:
        raise BadInputError(
            f"--nodes {spec.nodes} is out of range.",
            hint=f"Use {least} to {MAX_NODES} simulated nodes"
            + (" (0: only the real node)." if spec.real_node else "."),
        )
    if spec.api_port is not None and not 1024 <= spec.api_port <= 65535:
        raise BadInputError(
            f"--api-port {spec.api_port} is out of range.",
            hint="Use a port from 1024 to 65535, or leave it out to get a free one.",
        )


def _running_lab(paths: Paths, name: str) -> state.LabState | None:
    previous = state.load_state(paths, name)
    if previous and previous.processes and all(is_alive(p) for p in previous.processes):
        return previous
    return None


def _require_same_spec(running: state.LabState, spec: LabSpec) -> None:
    differs = running.nodes != spec.all_node_names() or (
        spec.api_port is not None and spec.api_port != running.api_port
    )
    if differs:
        real = " (one of them real)" if running.real_node else ""
        raise ConflictError(
            f"A lab named '{running.name}' is already running, with {len(running.nodes)} "
            f"node(s){real} at {running.server}.",
            hint=f"Stop it first (`libresh lab down --name {running.name}`) to start it "
            "differently, or start another with --name.",
        )


def _clear_debris(paths: Paths, name: str, reporter: Reporter) -> None:
    """What a crashed lab left behind (some processes, or only files) is cleaned up."""
    directory = state.lab_dir(paths, name)
    if not directory.exists():
        return
    previous = state.load_state(paths, name)
    killed = stop_lab_processes(previous, grace=5.0) if previous else []
    _remove_lab_dir(paths, name)
    detail = f" (killed leftover {', '.join(killed)})" if killed else ""
    reporter.warn(f"Cleaned up the remains of an earlier lab '{name}' that had crashed{detail}.")


def _require_no_other_real_node() -> None:
    """kube-proxy's iptables chains are the machine's, not the lab's: two real nodes would
    rewrite each other's Services (and `lab down` of one would remove the other's chains)."""
    other = realnode.running_kube_proxy()
    if other is not None:
        raise ConflictError(
            "Another lab's real node runs on this machine (its kube-proxy, pid "
            f"{other[0]}, started with {other[1]}); a machine has one at a time, since "
            "kube-proxy's iptables chains are shared by the whole machine.",
            hint="Stop that lab first (`libresh lab down --name NAME`, with the XDG_STATE_HOME "
            "it was started with), or start this one without --real-node.",
        )


def _choose_node(layout: LabLayout, name: str) -> realnode.NodeLayout:
    kubelet, healthz, metrics, ready = free_ports(4, avoid=[layout.api_port, layout.etcd_port])
    return realnode.choose_layout(layout.directory, name, kubelet, (healthz, metrics, ready))


def _serving_the_node(layout: LabLayout, node: realnode.NodeLayout) -> LabLayout:
    """Pods reach the API server through the `kubernetes` Service, whose endpoint is the
    advertised address: the node's bridge address, which the API server must then serve on
    (and be named by, in its certificate). It listens on every address, since the bridge is
    made later with the node and the lab's kubeconfig keeps 127.0.0.1; every request still
    needs a certificate or token of the lab (anonymous ones see only /healthz, /version)."""
    return dataclasses.replace(
        layout,
        bind_address="0.0.0.0",  # noqa: S104 (why: above)
        advertise_address=node.node_ip,
        extra_names=(*layout.extra_names, node.node_ip),
    )


def _choose_layout(paths: Paths, name: str, spec: LabSpec) -> LabLayout:
    api_port = spec.api_port
    if api_port is not None:
        require_free_port(
            api_port,
            f"the API server of lab '{name}'",
            "Choose another with --api-port, or leave --api-port out to get a free port.",
        )
        etcd, peer = free_ports(2, avoid=[api_port])
    else:
        api_port, etcd, peer = free_ports(3)
    return LabLayout(
        state.lab_dir(paths, name),
        api_port,
        etcd,
        peer,
        spec.bind_address,
        spec.extra_names,
        spec.join_token,
    )


def _start(
    paths: Paths,
    lab: state.LabState,
    layout: LabLayout,
    binaries: LabBinaries,
    reporter: Reporter,
) -> None:
    make_private_dirs(layout.directory)
    reporter.step("Writing certificates and kubeconfig")
    pki = create_pki(layout.pki.directory, lab.name, layout.extra_names)
    document = components.kubeconfig_document(
        lab.name,
        lab.server,
        pki.ca_cert.read_bytes(),
        pki.admin_cert.read_bytes(),
        pki.admin_key.read_bytes(),
    )
    write_private_file(layout.kubeconfig, yaml.safe_dump(document))
    if layout.join_token:
        write_private_file(
            layout.token_file, f"{layout.join_token},k3s-join,k3s-join,system:masters\n"
        )
    env = _daemon_env(layout.directory)

    def launch(component: str, argv: list[str]) -> ProcessRecord:
        record = start_daemon(component, argv, layout.log(component), env)
        lab.processes.append(record)
        state.save_state(paths, lab)  # recorded at once, so a crash now leaves no orphan
        return record

    reporter.step("Starting etcd")
    etcd = launch("etcd", components.etcd_command(binaries, layout))
    _wait_healthy(etcd, lambda: _etcd_healthy(layout), "etcd", ETCD_TIMEOUT)
    reporter.step("Starting kube-apiserver")
    apiserver = launch("kube-apiserver", components.apiserver_command(binaries, layout))
    with KubeClient.connect(KubeTarget(layout.kubeconfig)) as kube:
        _wait_healthy(apiserver, kube.healthy, "kube-apiserver", APISERVER_TIMEOUT)
        reporter.done(f"Kubernetes v{KUBERNETES_VERSION} API server ready at {lab.server}")
        reporter.step("Starting controller-manager, scheduler and kwok")
        launch("kube-controller-manager", components.controller_manager_command(binaries, layout))
        launch("kube-scheduler", components.scheduler_command(binaries, layout))
        launch("kwok", components.kwok_command(binaries, layout))
        kube.apply(components.storage_class_manifest(default=lab.real_node is None))
        kube.apply_all(
            components.node_manifest(node) for node in lab.nodes if node != realnode.NODE_NAME
        )


def _launcher(
    paths: Paths, lab: state.LabState, layout: LabLayout, node: realnode.NodeLayout
) -> Callable[[str, list[str]], ProcessRecord]:
    """Starts a daemon of the real node and records it at once."""
    env = {**_daemon_env(node.directory), "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"}

    def launch(component: str, argv: list[str]) -> ProcessRecord:
        record = start_daemon(component, argv, layout.log(component), env)
        lab.processes.append(record)
        state.save_state(paths, lab)
        return record

    return launch


def _start_runtime(
    paths: Paths,
    lab: state.LabState,
    layout: LabLayout,
    parts: NodeParts,
    node: realnode.NodeLayout,
    pool: ThreadPoolExecutor,
    reporter: Reporter,
) -> Future[None]:
    """Start containerd; its images are imported in `pool` (done when the future is)."""
    reporter.step(f"Starting containerd for the real node, importing {len(parts.images)} images")
    realnode.prepare_runtime(node, parts.tools)
    launch = _launcher(paths, lab, layout, node)
    command = realnode.containerd_command(parts.tools, node)
    containerd = launch("containerd", command)

    def take_images() -> None:
        wait = functools.partial(realnode.wait_containerd, parts.tools, node)
        containerd_answers(lab, containerd, lambda: launch("containerd", command), wait, reporter)
        realnode.import_images(parts.tools, node, parts.images)

    return pool.submit(take_images)


def containerd_answers(
    lab: state.LabState,
    started: ProcessRecord,
    start_again: Callable[[], ProcessRecord],
    wait: Callable[[ProcessRecord], None],
    reporter: Reporter,
) -> None:
    """Wait until containerd answers; if it died while starting, start it once more.

    Seen on a busy machine (a test suite's workers starting, image builds just done):
    containerd gone within its first second, its log empty. Not understood yet: a second death
    is the error, and the warning says how the first one ended, so that the cause can be
    found. Only a death seen (its exit status collected) is retried: a containerd that might
    still run would hold the root and socket the second one needs."""
    try:
        wait(started)
    except realnode.ContainerdDiedError as died:
        if died.ended is None:
            raise
        reporter.warn(f"{died.message} Starting it once more.")
        lab.processes.remove(started)  # a dead record would make the lab look crashed
        wait(start_again())


@dataclass(frozen=True)
class NodeParts:
    """What the real node is made of: the machine's tools, the binaries and images."""

    tools: realnode.NodeTools
    binaries: LabBinaries
    addons: AddonBinaries
    images: list[Path]


def _start_real_node(
    paths: Paths,
    lab: state.LabState,
    layout: LabLayout,
    parts: NodeParts,
    node: realnode.NodeLayout,
    reporter: Reporter,
) -> None:
    reporter.step(
        f"Starting the real node {realnode.NODE_NAME} (kubelet, kube-proxy, CoreDNS, "
        "local-path-provisioner)"
    )
    realnode.prepare_kubelet(node, layout.pki, lab.name, lab.server, layout.kubeconfig)
    launch = _launcher(paths, lab, layout, node)
    launch("kubelet", realnode.kubelet_command(parts.binaries, node))
    launch(
        nodeaddons.KUBE_PROXY,
        nodeaddons.kube_proxy_command(parts.binaries, node.kube_proxy_config),
    )
    launch(nodeaddons.COREDNS, nodeaddons.coredns_command(parts.addons, node.corefile))
    with KubeClient.connect(KubeTarget(layout.kubeconfig)) as kube:
        kube.apply_all(nodeaddons.local_path_manifests())
    launch(
        nodeaddons.LOCAL_PATH,
        nodeaddons.local_path_command(
            parts.addons,
            layout.kubeconfig,
            node.local_path_config,
            node.local_path_helper_pod,
            realnode.helper_image(),
        ),
    )


def _wait_node_addons(lab: state.LabState) -> None:
    """kube-proxy has written the Services' rules, CoreDNS has read the Services."""
    if lab.real_node is None:
        return
    node = realnode.NodeLayout.from_record(lab.real_node)
    records = {r.component: r for r in lab.processes}
    for component, url in (
        (nodeaddons.KUBE_PROXY, f"http://127.0.0.1:{node.proxy_healthz_port}/healthz"),
        (nodeaddons.COREDNS, f"http://127.0.0.1:{node.dns_ready_port}/ready"),
    ):
        _wait_healthy(records[component], _answers_ok(url), component, ADDONS_TIMEOUT)


def _answers_ok(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return httpx.get(url, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    return probe


def _wait_for_nodes(layout: LabLayout, lab: state.LabState, reporter: Reporter) -> None:
    with KubeClient.connect(KubeTarget(layout.kubeconfig)) as kube:
        reporter.step(f"Waiting for {len(lab.nodes)} node(s) and the controllers")
        _wait_nodes_and_controllers(kube, lab)
    _wait_node_addons(lab)
    real = 1 if lab.real_node else 0
    simulated = len(lab.nodes) - real
    reporter.done(
        f"{simulated} simulated node(s)" + (" and 1 real node" if real else "") + " ready"
    )


def _daemon_env(directory: Path) -> dict[str, str]:
    # HOME points into the lab so kwok never reads a user's ~/.kwok configuration.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(directory)}


def ssl_context_for(pki: LabPki) -> ssl.SSLContext:
    """A client of the lab's etcd: its CA, and the client certificate it asks for."""
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(str(pki.etcd_client_cert), str(pki.etcd_client_key))
    context.verify_flags |= ssl.VERIFY_X509_STRICT  # as Python 3.13's default
    return context


def _etcd_healthy(layout: LabLayout) -> bool:
    pki = layout.pki
    try:
        response = httpx.get(
            f"https://127.0.0.1:{layout.etcd_port}/health",
            timeout=2.0,
            verify=ssl_context_for(pki),
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and '"true"' in response.text


def _wait_healthy(
    record: ProcessRecord, healthy: Callable[[], bool], what: str, timeout: float
) -> None:
    def probe() -> bool | None:
        if healthy():
            return True
        reap(record.pid)
        if not is_alive(record):
            raise OperationFailedError(
                f"{what} exited while starting.", hint=_log_tail(Path(record.log))
            )
        return None

    wait_for(f"{what} to become healthy", probe, timeout=timeout, interval=0.1, max_interval=0.5)


def _wait_nodes_and_controllers(kube: KubeClient, lab: state.LabState) -> None:
    _live = [p for p in lab.processes if p.component != "etcd"]

    def controllers_up() -> bool:
        for record in _live:
            reap(record.pid)
            if not is_alive(record):
                raise OperationFailedError(
                    f"{record.component} exited while starting.", hint=_log_tail(Path(record.log))
                )
        # The controller-manager creates each namespace's "default" ServiceAccount; pods
        # cannot be admitted before it exists.
        return kube.get("v1", "ServiceAccount", "default", "default") is not None

    wait_nodes_ready(
        kube,
        lab.nodes,
        timeout=NODES_TIMEOUT,
        unreachable_grace=0.0,
        label_selector="node.libresh.dev/lab=true",
        also=controllers_up,
    )


def _log_tail(log: Path, lines: int = 12) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return f"(no log at {log})"
    return f"Last lines of {log}:\n" + "\n".join(text)


def lab_down(paths: Paths, name: str, reporter: Reporter) -> bool:
    """Stop every daemon of the lab and remove its state. False when there was no lab."""
    state.validate_name(name)
    if not state.lab_dir(paths, name).exists():
        return False
    previous = state.load_state(paths, name)
    if previous is not None:
        reporter.step(f"Stopping lab '{name}'")
        killed = stop_lab_processes(previous)
        if killed:
            reporter.warn(f"Killed after waiting for them to stop: {', '.join(killed)}.")
    _remove_lab_dir(paths, name)
    reporter.done(f"Lab '{name}' stopped and its state removed")
    return True


def stop_lab_processes(lab: state.LabState, *, grace: float = 10.0) -> list[str]:
    """Stop a lab's daemons: a real node first (its kubelet, containers, containerd, mounts,
    bridge and cgroup), then the control plane in order."""
    node_records = [r for r in lab.processes if r.component in realnode.NODE_COMPONENTS]
    killed: list[str] = []
    if lab.real_node is not None or node_records:
        node = realnode.NodeLayout.from_record(lab.real_node) if lab.real_node else None
        killed += realnode.stop_node(node, node_records, grace=grace)
    others = [r for r in lab.processes if r.component not in realnode.NODE_COMPONENTS]
    return killed + stop_in_order(others, grace=grace)


def _remove_lab_dir(paths: Paths, name: str) -> None:
    """Remove the lab's files, never what is mounted inside them (a pod's volume may be a
    directory of this machine's)."""
    directory = state.lab_dir(paths, name)
    realnode.unmount_under(directory)
    left = realnode.mounts_under(directory)
    if left:
        raise OperationFailedError(
            f"Could not unmount {len(left)} mount(s) under {directory}; its files were kept.",
            hint="Unmount them (" + ", ".join(left[:3]) + ") and run `libresh lab down` again.",
        )
    state.remove_state(paths, name)


def stop_in_order(records: list[ProcessRecord], *, grace: float = 10.0) -> list[str]:
    """Stop the daemons tier by tier (STOP_ORDER); returns those that had to be killed."""
    killed: list[str] = []
    known = {name for tier in STOP_ORDER for name in tier}
    tiers = [*STOP_ORDER, tuple(r.component for r in records if r.component not in known)]
    for tier in tiers:
        killed += stop_all([r for r in records if r.component in tier], grace=grace)
    return killed


def lab_status(paths: Paths, name: str) -> LabStatus:
    state.validate_name(name)
    lab = state.load_state(paths, name)
    if lab is None:
        # A directory without a readable record is what a crash during `lab up` leaves.
        broken = state.lab_dir(paths, name).exists()
        return LabStatus(name=name, health="broken" if broken else "stopped")
    processes = {p.component: is_alive(p) for p in lab.processes}
    status = LabStatus(
        name=name,
        health="degraded",
        server=lab.server,
        kubeconfig=str(state.kubeconfig_path(paths, name)),
        processes=processes,
        nodes=len(lab.nodes),
        kubernetes_version=lab.kubernetes_version,
        kwok_version=lab.kwok_version,
        real_node=realnode.NODE_NAME if lab.real_node else None,
    )
    if processes and all(processes.values()):
        status.nodes_ready = _count_ready_nodes(Path(status.kubeconfig or ""))
        if status.nodes_ready == len(lab.nodes):
            status.health = "running"
    return status


def _count_ready_nodes(kubeconfig: Path) -> int | None:
    try:
        with KubeClient.connect(KubeTarget(kubeconfig), timeout=5.0) as kube:
            nodes = kube.list("v1", "Node", label_selector="node.libresh.dev/lab=true")
    except LibreshError:
        return None
    return len(ready_names(nodes))


def all_statuses(paths: Paths) -> list[LabStatus]:
    return [lab_status(paths, name) for name in state.lab_names(paths)]


__all__ = ["LabSpec", "LabStatus", "all_statuses", "lab_down", "lab_status", "lab_up"]
