"""The lab's real node: pods that really run, beside (or instead of) kwok's simulated nodes.

containerd, runc and the CNI plugins are Debian's packages; the kubelet comes from the lab's
multi-call binary (the same pinned k8s.io/kubernetes as the control plane). Everything the node
writes stays under the lab's directory (`node/`): containerd's config, root, state and socket,
the CNI configuration and address leases, the kubelet's root, pod logs and certificates. What
cannot live there is named after the lab, so that `lab down` finds and removes it: a bridge
(`lr-…`) with the node's address and the pods' network (10.85.N.0/24), and a cgroup
(`libresh-lab-NAME`) holding every container.

Needs root (mounts, network namespaces, cgroups). The kubelet, as on any node, sets a few kernel
tunables it wants (vm.overcommit_memory, kernel.panic…).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from libresh_cli.errors import OperationFailedError, PrerequisiteError
from libresh_cli.lab import imagebuild, nodeaddons
from libresh_cli.lab.binaries import CONTROLPLANE, LabBinaries
from libresh_cli.lab.components import kubeconfig_document
from libresh_cli.lab.pki import LabPki, issue_node_certificates
from libresh_cli.lab.processes import ProcessRecord, stop_all
from libresh_cli.progress import Reporter
from libresh_cli.settings import Paths, make_private_dirs, write_private_file

NODE_NAME = "lab-real-node"
REAL_NODE_LABEL = "node.libresh.dev/real"
# Stopped in this order; started in the reverse one.
NODE_COMPONENTS = (*reversed(nodeaddons.ADDON_COMPONENTS), "kubelet", "containerd")
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
CNI_DIRS = (Path("/usr/lib/cni"), Path("/opt/cni/bin"))
POD_NETWORKS = "10.85.{}.0/24"  # one /24 a lab; 10.77-79 are the SSH test hosts'
SUN_PATH_MAX = 107  # a Unix socket's path: sun_path is 108 bytes with its final NUL
# The node's sockets, under its directory, with what their owners add: containerd ".ttrpc";
# the kubelet a temporary name of up to 10 digits for its pod-resources socket, and its
# device plugins' registration socket (seen: "bind: invalid argument" under a pytest-xdist
# worker's temporary directory, where containerd's own socket still fitted).
NODE_SOCKETS = (
    "containerd.sock.ttrpc",
    "kubelet/pod-resources/1234567890",
    "kubelet/device-plugins/kubelet.sock",
)
CONTAINERD_TIMEOUT = 30.0
CGROUP_ROOT = Path("/sys/fs/cgroup")


# --- what the machine must have --------------------------------------------------------------


@dataclass(frozen=True)
class NodeTools:
    containerd: str
    ctr: str
    runc: str
    cni_dir: str
    iptables: str
    ip: str
    mmdebstrap: str


def find_tools() -> NodeTools:
    """Each part the real node needs, or PrerequisiteError naming the Debian package (or what
    else) to install for every part that is missing."""
    missing: list[tuple[str, str]] = []

    def need(command: str, package: str) -> str:
        found = shutil.which(command, path=_sbin_path())
        if found is None:
            missing.append((command, package))
        return found or ""

    tools = NodeTools(
        containerd=need("containerd", "containerd"),
        ctr=need("ctr", "containerd"),
        runc=need("runc", "runc"),
        cni_dir=str(_cni_dir() or ""),
        iptables=need("iptables", "iptables"),
        ip=need("ip", "iproute2"),
        mmdebstrap=need("mmdebstrap", "mmdebstrap"),
    )
    if not tools.cni_dir:
        missing.append((f"CNI plugins {', '.join(CNI_PLUGINS)}", "containernetworking-plugins"))
    for command, package in (("mount", "mount"), ("umount", "mount"), ("nsenter", "util-linux")):
        need(command, package)
    if missing:
        packages = sorted({package for _, package in missing})
        raise PrerequisiteError(
            "The lab's real node needs parts this machine lacks: "
            + "; ".join(f"{what} (Debian package {package})" for what, package in missing)
            + ".",
            hint=f"Install them: apt-get install {' '.join(packages)}",
        )
    if os.geteuid() != 0:
        raise PrerequisiteError(
            "A lab with a real node needs root (it mounts, makes network namespaces and "
            "cgroups, as the kubelet and containerd do on any node).",
            hint="Run it as root (sudo -E libresh lab up --real-node), or leave out "
            "--real-node for simulated nodes, which need no root.",
        )
    if "overlay" not in Path("/proc/filesystems").read_text():
        raise PrerequisiteError(
            "The kernel has no overlay filesystem, which containerd's snapshotter needs.",
            hint="Load it (modprobe overlay) or use simulated nodes (no --real-node).",
        )
    return tools


def _sbin_path() -> str:
    return os.pathsep.join(
        [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"]
    )


def _cni_dir() -> Path | None:
    for directory in CNI_DIRS:
        if all(os.access(directory / plugin, os.X_OK) for plugin in CNI_PLUGINS):
            return directory
    return None


# --- the node's layout -----------------------------------------------------------------------


@dataclass(frozen=True)
class NodeLayout:
    """Where a real node keeps everything, and the names it holds outside the lab directory."""

    directory: Path  # <lab>/node
    lab_name: str
    network_index: int
    kubelet_port: int
    cgroup_parent: str  # where the node's cgroup goes: "/" or the cgroup libresh runs in
    # Where kube-proxy and CoreDNS say they are up (127.0.0.1; 0 in a record of an older lab).
    proxy_healthz_port: int = 0
    proxy_metrics_port: int = 0
    dns_ready_port: int = 0

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> NodeLayout:
        return cls(
            Path(record["directory"]),
            str(record["lab_name"]),
            int(record["network_index"]),
            int(record["kubelet_port"]),
            str(record["cgroup_parent"]),
            int(record.get("proxy_healthz_port", 0)),
            int(record.get("proxy_metrics_port", 0)),
            int(record.get("dns_ready_port", 0)),
        )

    def to_record(self) -> dict[str, Any]:
        return {**asdict(self), "directory": str(self.directory), "node_name": NODE_NAME}

    @property
    def subnet(self) -> str:
        return POD_NETWORKS.format(self.network_index)

    @property
    def node_ip(self) -> str:
        return self.subnet.replace(".0/24", ".1")

    @property
    def bridge(self) -> str:
        # Interface names are at most 15 characters: a hash of the lab's directory.
        return "lr-" + hashlib.sha256(str(self.directory).encode()).hexdigest()[:12]

    @property
    def cgroup(self) -> str:
        return f"{self.cgroup_parent.rstrip('/')}/libresh-lab-{self.lab_name}"

    @property
    def containerd_dir(self) -> Path:
        return self.directory / "containerd"

    @property
    def containerd_config(self) -> Path:
        return self.containerd_dir / "config.toml"

    @property
    def containerd_socket(self) -> Path:
        return self.directory / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.directory / "cni" / "net.d"

    @property
    def cni_data_dir(self) -> Path:
        return self.directory / "cni" / "leases"

    @property
    def kubelet_dir(self) -> Path:
        return self.directory / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.directory / "kubelet-config.yaml"

    @property
    def kubelet_kubeconfig(self) -> Path:
        return self.directory / "kubelet.kubeconfig"

    @property
    def pod_logs(self) -> Path:
        return self.directory / "pod-logs"

    @property
    def certs(self) -> Path:
        return self.directory / "pki"

    @property
    def kube_proxy_config(self) -> Path:
        return self.directory / "kube-proxy-config.yaml"

    @property
    def corefile(self) -> Path:
        return self.directory / "Corefile"

    @property
    def volumes(self) -> Path:
        """Where local-path-provisioner makes the PVs' directories."""
        return self.directory / "volumes"

    @property
    def local_path_config(self) -> Path:
        return self.directory / "local-path" / "config.json"

    @property
    def local_path_helper_pod(self) -> Path:
        return self.directory / "local-path" / "helper-pod.json"


def choose_layout(
    lab_directory: Path, lab_name: str, kubelet_port: int, addon_ports: tuple[int, int, int]
) -> NodeLayout:
    """`addon_ports`: kube-proxy's healthz and metrics, CoreDNS' ready."""
    directory = lab_directory / "node"
    longest = max((str(directory / socket) for socket in NODE_SOCKETS), key=len)
    if len(longest) > SUN_PATH_MAX:
        room = SUN_PATH_MAX - (len(longest) - len(str(lab_directory)))
        raise PrerequisiteError(
            f"The lab's directory {lab_directory} is too long a path for the real node's "
            f"sockets ({longest} would be {len(longest)} characters; at most {SUN_PATH_MAX}).",
            hint=f"Use a shorter XDG_STATE_HOME or --name: the lab's directory may have at "
            f"most {room} characters.",
        )
    return NodeLayout(
        directory, lab_name, _free_network(), kubelet_port, _cgroup_parent(), *addon_ports
    )


def _free_network() -> int:
    """The first 10.85.N.0/24 no interface of this machine has an address in."""
    done = subprocess.run(
        ["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=False
    )
    taken = {
        int(word.split(".")[2])
        for word in done.stdout.split()
        if word.startswith("10.85.") and word.count(".") == 3
    }
    for index in range(1, 255):
        if index not in taken:
            return index
    raise OperationFailedError("Every lab network 10.85.1-254.0/24 is taken on this machine.")


def _cgroup_parent() -> str:
    """With cgroups v1, the node's cgroup goes inside the memory cgroup libresh runs in, so the
    containers count against the same limits (and are found by whoever cleans that up)."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return "/"  # v2: a process's own cgroup may not have children with controllers
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                return path or "/"
    return "/"


def cgroup_dirs(layout: NodeLayout) -> list[Path]:
    """The node's cgroup in every hierarchy (one with cgroups v2, one a controller with v1)."""
    relative = layout.cgroup.lstrip("/")
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT / relative]
    return [
        mount / relative
        for mount in sorted(CGROUP_ROOT.iterdir())
        if mount.is_dir() and not mount.is_symlink() and (mount / "cgroup.procs").exists()
    ]


# --- configuration files ---------------------------------------------------------------------


def containerd_config(layout: NodeLayout, tools: NodeTools) -> str:
    """containerd's own config: nothing under /etc, /var/lib or /run/containerd is used."""
    cri = '[plugins."io.containerd.grpc.v1.cri"]'
    runc = f"{cri[:-1]}.containerd.runtimes.runc]"
    root = layout.containerd_dir
    return f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{layout.containerd_socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{root / "opt"}"

{cri}
  sandbox_image = "{imagebuild.PAUSE_REFERENCE}"
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  # Some machines (sandboxes, containers) refuse to lower a process's oom_score_adj, which
  # the kubelet asks for its pods: keep it no lower than containerd's own.
  restrict_oom_score_adj = true
  enable_selinux = false

{cri[:-1]}.cni]
  bin_dir = "{tools.cni_dir}"
  conf_dir = "{layout.cni_conf_dir}"

{cri[:-1]}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

{runc}
  runtime_type = "io.containerd.runc.v2"

{runc[:-1]}.options]
  BinaryName = "{tools.runc}"
  Root = "{root / "runc"}"
  SystemdCgroup = false
"""


def cni_config(layout: NodeLayout) -> dict[str, Any]:
    """bridge + host-local + portmap (containerd adds loopback itself). No masquerading: the
    pods talk to each other and to this machine, nothing else."""
    return {
        "cniVersion": "1.0.0",
        "name": "libresh-lab",
        "plugins": [
            {
                "type": "bridge",
                "bridge": layout.bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(layout.cni_data_dir),
                    "ranges": [[{"subnet": layout.subnet, "gateway": layout.node_ip}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(layout: NodeLayout, pki: LabPki, certs_dir: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": layout.node_ip,
        "port": layout.kubelet_port,
        "readOnlyPort": 0,
        "healthzPort": 0,
        "tlsCertFile": str(certs_dir / "kubelet.crt"),
        "tlsPrivateKeyFile": str(certs_dir / "kubelet.key"),
        # Only clients with a certificate of the lab's CA (the API server shows the admin's);
        # they are the lab's admins anyway, so whatever they ask is allowed.
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(pki.ca_cert)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": layout.cgroup,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "podLogsDir": str(layout.pod_logs),
        "volumePluginDir": str(layout.directory / "volume-plugins"),
        # CoreDNS listens on the node's address (nodeaddons.corefile).
        "clusterDNS": [layout.node_ip],
        "clusterDomain": nodeaddons.CLUSTER_DOMAIN,
        "resolvConf": "/etc/resolv.conf",
        # The images are built here and cannot be pulled again: never collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # A lab shares the machine with everything else: evict only when truly out of room.
        "evictionHard": {
            "memory.available": "50Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "serializeImagePulls": False,
        "registerNode": True,
    }


def kubelet_command(binaries: LabBinaries, layout: NodeLayout) -> list[str]:
    return [
        str(binaries.controlplane),
        "kubelet",
        f"--config={layout.kubelet_config}",
        f"--kubeconfig={layout.kubelet_kubeconfig}",
        f"--root-dir={layout.kubelet_dir}",
        f"--cert-dir={layout.certs}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={layout.node_ip}",
        f"--node-labels=node.libresh.dev/lab=true,{REAL_NODE_LABEL}=true",
        "--v=1",
    ]


def containerd_command(tools: NodeTools, layout: NodeLayout) -> list[str]:
    return [tools.containerd, f"--config={layout.containerd_config}"]


# --- starting --------------------------------------------------------------------------------


def prepare_runtime(layout: NodeLayout, tools: NodeTools) -> None:
    """What containerd needs (its files, the bridge, the cgroup): nothing of the API server, so
    containerd starts and takes its images while the control plane starts."""
    make_private_dirs(layout.directory)
    for directory in (layout.containerd_dir, layout.cni_conf_dir, layout.pod_logs):
        directory.mkdir(parents=True, exist_ok=True)
    write_private_file(layout.containerd_config, containerd_config(layout, tools))
    (layout.cni_conf_dir / "10-libresh-lab.conflist").write_text(
        json.dumps(cni_config(layout), indent=2) + "\n"
    )
    _make_bridge(layout)
    for directory in cgroup_dirs(layout):
        directory.mkdir(parents=True, exist_ok=True)


def prepare_kubelet(
    layout: NodeLayout, pki: LabPki, lab_name: str, server: str, admin_kubeconfig: Path
) -> None:
    """The kubelet's certificates and files; kube-proxy, CoreDNS and local-path-provisioner
    use the lab's admin kubeconfig."""
    certs = issue_node_certificates(pki, layout.certs, NODE_NAME, layout.node_ip)
    kubeconfig = kubeconfig_document(
        lab_name,
        server,
        pki.ca_cert.read_bytes(),
        certs.client_cert.read_bytes(),
        certs.client_key.read_bytes(),
    )
    write_private_file(layout.kubelet_kubeconfig, yaml.safe_dump(kubeconfig))
    write_private_file(
        layout.kubelet_config, yaml.safe_dump(kubelet_config(layout, pki, layout.certs))
    )
    _write_addon_configs(layout, admin_kubeconfig)


def _write_addon_configs(layout: NodeLayout, admin_kubeconfig: Path) -> None:
    proxy = nodeaddons.kube_proxy_config(
        admin_kubeconfig,
        NODE_NAME,
        layout.subnet,
        layout.proxy_healthz_port,
        layout.proxy_metrics_port,
    )
    write_private_file(layout.kube_proxy_config, yaml.safe_dump(proxy))
    write_private_file(
        layout.corefile,
        nodeaddons.corefile(layout.node_ip, layout.dns_ready_port, admin_kubeconfig),
    )
    make_private_dirs(layout.local_path_config.parent)
    write_private_file(layout.local_path_config, nodeaddons.local_path_config(layout.volumes))
    write_private_file(
        layout.local_path_helper_pod, nodeaddons.local_path_helper_pod(helper_image())
    )
    layout.volumes.mkdir(parents=True, exist_ok=True)


def helper_image() -> str:
    """The image local-path's helper pods run: the Debian image every real node has."""
    return imagebuild.load_recipe("debian").reference


def _make_bridge(layout: NodeLayout) -> None:
    """The bridge exists before the kubelet starts: its address is the node's address."""
    _ip("link", "add", layout.bridge, "type", "bridge")
    _ip("addr", "add", f"{layout.node_ip}/24", "dev", layout.bridge)
    _ip("link", "set", layout.bridge, "up")


def _ip(*args: str, check: bool = True) -> bool:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise OperationFailedError(
            f"`ip {' '.join(args)}` failed: {done.stderr.strip() or done.returncode}."
        )
    return done.returncode == 0


class ContainerdDiedError(OperationFailedError):
    """containerd ended before it answered on its socket; `ended` says how, when known (it is
    not when the process was not this one's child, or has no command line yet is no zombie)."""

    def __init__(self, message: str, *, hint: str | None = None, ended: str | None = None):
        super().__init__(message, hint=hint)
        self.ended = ended


def wait_containerd(tools: NodeTools, layout: NodeLayout, record: ProcessRecord) -> None:
    from libresh_cli.lab.processes import is_alive, reap

    deadline = time.monotonic() + CONTAINERD_TIMEOUT
    while time.monotonic() < deadline:
        if layout.containerd_socket.exists() and _ctr(tools, layout, "version", check=False):
            return
        if not is_alive(record):
            # A dying process has no command line before it is a zombie: wait for its end.
            ended = reap(record.pid, wait=2.0)
            how = f" ({ended})" if ended else ""
            raise ContainerdDiedError(
                f"containerd exited while starting{how}.",
                hint=_log_tail(Path(record.log)),
                ended=ended,
            )
        time.sleep(0.1)
    raise OperationFailedError(
        f"containerd did not answer on {layout.containerd_socket} within "
        f"{CONTAINERD_TIMEOUT:.0f} s.",
        hint=_log_tail(Path(record.log)),
    )


def _ctr(tools: NodeTools, layout: NodeLayout, *args: str, check: bool = True) -> bool:
    done = subprocess.run(
        [tools.ctr, "--address", str(layout.containerd_socket), "--namespace", "k8s.io", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if check and done.returncode != 0:
        raise OperationFailedError(
            f"`ctr {' '.join(args[:2])}` failed (exit {done.returncode}).",
            hint=done.stderr.strip()[-1500:] or None,
        )
    return done.returncode == 0


def node_images(paths: Paths, binaries: LabBinaries, reporter: Reporter) -> list[Path]:
    """The image archives the node starts with: its pod sandbox, and every image recipe (built
    once and cached)."""
    archives = [imagebuild.ensure_pause_image(paths, binaries.pause).archive]
    for name in imagebuild.recipe_names():
        recipe = imagebuild.load_recipe(name)
        archives.append(imagebuild.ensure_image(paths, recipe, reporter).archive)
    return archives


def import_images(tools: NodeTools, layout: NodeLayout, archives: list[Path]) -> None:
    """Into containerd's content store only: unpacking every image into snapshots took most of
    `lab up`; the CRI plugin unpacks an image when a container first needs it (its
    WithNewSnapshot retries after Image.Unpack, containerd pkg/cri/opts/container.go)."""
    for archive in archives:
        _ctr(tools, layout, "images", "import", "--no-unpack", str(archive))


def _log_tail(log: Path, lines: int = 12) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return f"(no log at {log})"
    if not text:
        return f"It wrote nothing to {log}."
    return f"Last lines of {log}:\n" + "\n".join(text)


# --- stopping --------------------------------------------------------------------------------


def stop_node(
    layout: NodeLayout | None, records: list[ProcessRecord], grace: float = 10.0
) -> list[str]:
    """Stop the kubelet, kill every container and its shim, stop containerd, then undo what the
    node left outside its processes: mounts, network namespaces, the bridge, the cgroup.
    Returns the components that had to be killed. Safe to run on a half-started node."""
    with one_start_at_a_time():  # no other node starts until this one's chains are gone
        addons = [r for r in records if r.component in nodeaddons.ADDON_COMPONENTS]
        killed = stop_all(addons, grace=grace)
        killed += stop_all([r for r in records if r.component == "kubelet"], grace=grace)
        if layout is not None:
            _kill_cgroup(layout)
            _kill_shims(layout)
        killed += stop_all([r for r in records if r.component == "containerd"], grace=grace)
        if layout is not None:
            unmount_under(layout.directory)
            _ip("link", "delete", layout.bridge, check=False)
            _remove_cgroup(layout)
            # After kube-proxy and the kubelet stopped: neither writes them again. Never while
            # another lab's kube-proxy runs: the chains would be its.
            if running_kube_proxy() is None:
                nodeaddons.remove_kube_chains()
    return killed


def _kill_cgroup(layout: NodeLayout) -> None:
    """SIGKILL every process in the node's cgroup (the containers), until none is left."""
    for _ in range(50):
        pids = _cgroup_pids(layout)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _cgroup_pids(layout: NodeLayout) -> set[int]:
    pids: set[int] = set()
    for root in cgroup_dirs(layout):
        for directory in _cgroup_tree(root):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
    return pids


def _cgroup_tree(root: Path) -> list[Path]:
    """`root` and every cgroup below it, deepest first. Containers' cgroups vanish while they
    are walked (runc removes a container's as it dies): os.walk passes over a directory gone
    between its listing and its reading, where Path.rglob raised FileNotFoundError (seen
    stopping a lab with a Nextcloud running: `lab down` stopped half-way)."""
    found = [Path(directory) for directory, _, _ in os.walk(root)]
    return sorted(found, key=lambda p: -len(p.parts))


def _kill_shims(layout: NodeLayout) -> None:
    """containerd's shims outlive containerd by design."""
    for pid in shim_pids(layout):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def shim_pids(layout: NodeLayout) -> list[int]:
    """The node's containerd shims (one per pod): ours name our socket."""
    marker = str(layout.containerd_socket).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"containerd-shim" in cmdline and marker in cmdline.split(b"\0"):
            pids.append(int(entry.name))
    return pids


START_LOCK = Path("/run/lock/libresh-lab-real-node.lock")
# Depth of this process's hold on START_LOCK: a start that fails stops its node while holding
# it, and flock on a second descriptor of the same file would wait for the first forever.
_held = threading.local()


@contextlib.contextmanager
def one_start_at_a_time() -> Iterator[None]:
    """Held while a lab starts its real node, and while one stops from its kube-proxy to the
    removal of kube-proxy's chains: the next start waits, then sees it running or gone. (A
    start between a stop's kube-proxy exit and its removal of the machine's chains lost its
    Services: the stopping lab removed what the new kube-proxy had just written.)"""
    depth = getattr(_held, "depth", 0)
    if depth:
        _held.depth = depth + 1
        try:
            yield
        finally:
            _held.depth = depth
        return
    START_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with START_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _held.depth = 1
        try:
            yield
        finally:
            _held.depth = 0
            fcntl.flock(lock, fcntl.LOCK_UN)


def running_kube_proxy() -> tuple[int, str] | None:
    """The pid and config file of a lab's kube-proxy running on this machine (any lab, any
    user's state directory), if one runs."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if len(argv) > 2 and argv[0].endswith("/" + CONTROLPLANE) and argv[1] == "kube-proxy":
            return int(entry.name), argv[2].removeprefix("--config=")
    return None


def _remove_cgroup(layout: NodeLayout) -> None:
    for root in cgroup_dirs(layout):
        # Deepest first: a cgroup directory can only go once its children have.
        for directory in _cgroup_tree(root):
            with contextlib.suppress(OSError):
                directory.rmdir()


def mounts_under(directory: Path) -> list[str]:
    """Mount points at or below `directory`, deepest first (from /proc/self/mountinfo)."""
    prefix = str(directory).rstrip("/")
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = _unescape_mount(line.split()[4])
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(set(found), key=lambda p: -p.count("/"))


def _unescape_mount(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal (\040 …).
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")).replace(
        "\\134", "\\"
    )


def unmount_under(directory: Path) -> None:
    for _ in range(3):
        points = mounts_under(directory)
        if not points:
            return
        for point in points:
            done = subprocess.run(["umount", point], capture_output=True, check=False)
            if done.returncode != 0:
                subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
