"""STAND-IN for the k3s installer, for tests only: k3s cannot be downloaded here.

Run on a test host (inside its network and mount namespaces) by the script that
`tests/integration/sshhosts.py` writes and passes to `libresh bootstrap --install-script`.
It does what the real installer leaves behind, where k3s leaves it:
- reads /etc/rancher/k3s/config.yaml (node-name, tls-san, write-kubeconfig-mode);
- puts a `k3s` command in /usr/local/bin that answers `--version`;
- starts the lab control plane (real kube-apiserver, etcd, controllers, kwok) serving on
  every address of the host at port 6443, its certificate carrying the tls-san names, with one
  simulated node named as k3s would name it;
- writes /etc/rancher/k3s/k3s.yaml (names "default", server https://127.0.0.1:6443, the mode
  asked) and /var/lib/rancher/k3s/server/node-token.
Re-running it keeps a running control plane, as re-running the real installer keeps the data.

Joining (the HA tests): with `server:` in the config (another server, or an agent with
INSTALL_K3S_EXEC=agent), no control plane starts here. Like k3s, it joins with the config's
`token`: it registers its node through the `server` URL with that token (which the first
server's stand-in accepts, and only that one), labelled as k3s labels servers (control-plane,
etcd) or agents. A joining server also serves port 6443, forwarding to the first server, so
the load balancer's health check sees every server. With `cluster-init`, the first server
also has the CRDs k3s ships (helm-controller's; cert-manager's, as its chart would add them),
upstream's own files from their Go modules (tests/upstream.py).

Every run appends `start <time>` / `end <time>` to /var/lib/rancher/standin-timeline, so a
test can check the order of the installs across hosts; /var/lib/rancher/standin-join-seconds
makes a join take that long (the benchmark's stand-in for k3s' own start-up time).

Test hooks: while /var/lib/rancher/standin-hold exists, it waits there (after writing
/var/lib/rancher/standin-started) so a test can cut the connection mid-install; the file
/var/lib/rancher/standin-fail makes it fail like a broken download would.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from pathlib import Path

import yaml

CONFIG = Path("/etc/rancher/k3s/config.yaml")
KUBECONFIG = Path("/etc/rancher/k3s/k3s.yaml")
TOKEN = Path("/var/lib/rancher/k3s/server/node-token")
STATE = Path("/var/lib/rancher/k3s/standin")
K3S_BIN = Path("/usr/local/bin/k3s")
AIRGAP_IMAGES = Path("/var/lib/rancher/k3s/agent/images")
HOLD = Path("/var/lib/rancher/standin-hold")
STARTED = Path("/var/lib/rancher/standin-started")
FAIL = Path("/var/lib/rancher/standin-fail")
TIMELINE = Path("/var/lib/rancher/standin-timeline")
JOIN_SECONDS = Path("/var/lib/rancher/standin-join-seconds")
FORWARDER_PID = Path("/var/lib/rancher/k3s/standin/forwarder.pid")
REPO = Path(__file__).resolve().parents[2]
SERVER_ROLES = ("control-plane", "etcd", "master")
CHANNEL_VERSIONS = {"stable": "v1.34.4+k3s1", "latest": "v1.35.1+k3s1"}

K3S_COMMAND = """#!/bin/sh
# STAND-IN k3s command (tests only): answers --version like k3s does.
case "$1" in
  --version|-v|version) echo "k3s version $(cat /var/lib/rancher/k3s/standin/version) (stand-in)"
                        echo "go version go1.24.0" ;;
  *) echo "k3s stand-in: only --version is implemented" >&2; exit 1 ;;
esac
"""


def main() -> int:
    STARTED.parent.mkdir(parents=True, exist_ok=True)
    _timeline("start")
    try:
        return _install()
    finally:
        _timeline("end")


def _timeline(event: str) -> None:
    with TIMELINE.open("a") as handle:
        handle.write(f"{event} {time.time():.3f}\n")


def _install() -> int:
    STARTED.write_text(str(os.getpid()))
    while HOLD.exists():
        time.sleep(0.1)
    if FAIL.exists():
        print("[ERROR]  Download failed (stand-in told to fail)", file=sys.stderr)
        return 1
    config = yaml.safe_load(CONFIG.read_text()) or {}
    version = _version()
    if os.environ.get("INSTALL_K3S_SKIP_DOWNLOAD") == "true":
        _check_airgap_files()
    else:
        K3S_BIN.parent.mkdir(parents=True, exist_ok=True)
        K3S_BIN.write_text(K3S_COMMAND)
        K3S_BIN.chmod(0o755)
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / "version").write_text(version)
    print(f"[INFO]  Using {version} as release (stand-in)")
    if config.get("server"):
        return _join(config, version)
    # Imported here: a join does not need them, and eight joins starting at once on a small
    # machine should not each pay for loading the lab.
    from libresh_cli.lab.cluster import LabSpec, lab_up
    from libresh_cli.lab.state import kubeconfig_path
    from libresh_cli.progress import SilentReporter
    from libresh_cli.settings import Paths

    paths = Paths(
        config=STATE / "config",
        data=STATE / "data",
        state=STATE / "state",
        cache=Path(os.environ["STANDIN_CACHE"]),
    )
    spec = LabSpec(
        name="k3s",
        nodes=1,
        api_port=6443,
        bind_address="0.0.0.0",  # noqa: S104 - every address of the test host, as k3s
        extra_names=tuple(config.get("tls-san") or ()),
        node_names=(str(config["node-name"]),),
        join_token=str(config["token"]) if config.get("token") else None,
    )
    lab_up(paths, spec, SilentReporter())
    if config.get("cluster-init"):
        _first_server_extras(kubeconfig_path(paths, "k3s"), str(config["node-name"]))
    _write_kubeconfig(
        kubeconfig_path(paths, "k3s"), int(str(config.get("write-kubeconfig-mode", "0600")), 8)
    )
    if not TOKEN.exists():
        TOKEN.parent.mkdir(parents=True, exist_ok=True)
        TOKEN.write_text(f"K10{secrets.token_hex(32)}::server:{secrets.token_hex(16)}\n")
        TOKEN.chmod(0o600)
    print("[INFO]  systemd: Starting k3s (stand-in: lab control plane started)")
    return 0


def _first_server_extras(kubeconfig: Path, node_name: str) -> None:
    from libresh_cli.kube.client import KubeClient
    from libresh_cli.kube.connection import KubeTarget

    with KubeClient.connect(KubeTarget(kubeconfig)) as kube:
        labels = {f"node-role.kubernetes.io/{role}": "true" for role in SERVER_ROLES}
        kube.request(
            "PATCH",
            f"/api/v1/nodes/{node_name}",
            body={"metadata": {"labels": labels}},
            content_type="application/merge-patch+json",
        )
        # Upstream's own CRDs, from the cache the test process filled (sshhosts.standin_script):
        # the test host has no route to the module proxy.
        from tests.upstream import k3s_crds

        kube.apply_all(k3s_crds(Path(os.environ["STANDIN_CACHE"]) / "upstream"))


def _join(config: dict[str, object], version: str) -> int:
    """Register this node through the first server, with the token, as k3s joins."""
    if JOIN_SECONDS.exists():
        time.sleep(float(JOIN_SECONDS.read_text()))
    import httpx

    server = str(config["server"])
    role = "agent" if os.environ.get("INSTALL_K3S_EXEC", "").startswith("agent") else "server"
    labels = {"kubernetes.io/hostname": str(config["node-name"])}
    if role == "server":
        labels.update({f"node-role.kubernetes.io/{r}": "true" for r in SERVER_ROLES})
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": config["node-name"],
            "labels": labels,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
        },
        "status": {"nodeInfo": {"kubeletVersion": version.split("+")[0] + "+k3s1"}},
    }
    headers = {"Authorization": f"Bearer {config['token']}"}
    with httpx.Client(base_url=server, verify=False, headers=headers, timeout=10) as client:  # noqa: S501 - stand-in
        response = client.post("/api/v1/nodes", json=node)
        if response.status_code == 401:
            print("[ERROR]  the server refused the join token (stand-in)", file=sys.stderr)
            return 1
        if response.status_code not in (201, 409):
            print(f"[ERROR]  join failed: {response.status_code} {response.text}", file=sys.stderr)
            return 1
    if role == "server":
        _forward_api_port(server)
    print(f"[INFO]  systemd: Starting k3s-{role} (stand-in: joined {server})")
    return 0


def _forward_api_port(server: str) -> None:
    """Serve 6443 here as a k3s server does, by forwarding to the first server."""
    if FORWARDER_PID.exists():
        return
    FORWARDER_PID.parent.mkdir(parents=True, exist_ok=True)
    host, port = server.removeprefix("https://").rsplit(":", 1)
    code = (
        "import socket, threading\n"
        "def pipe(a, b):\n"
        "    try:\n"
        "        while (d := a.recv(65536)): b.sendall(d)\n"
        "    except OSError: pass\n"
        "    try: b.shutdown(socket.SHUT_WR)\n"
        "    except OSError: pass\n"
        "s = socket.create_server(('0.0.0.0', 6443))\n"
        "while True:\n"
        "    c, _ = s.accept()\n"
        f"    u = socket.create_connection(({host!r}, {port}))\n"
        "    for x, y in ((c, u), (u, c)):\n"
        "        threading.Thread(target=pipe, args=(x, y), daemon=True).start()\n"
    )
    import subprocess

    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    FORWARDER_PID.write_text(str(process.pid))


def _version() -> str:
    version = os.environ.get("INSTALL_K3S_VERSION")
    if version:
        return version
    return CHANNEL_VERSIONS.get(os.environ.get("INSTALL_K3S_CHANNEL", "stable"), "v1.34.4+k3s1")


def _check_airgap_files() -> None:
    """INSTALL_K3S_SKIP_DOWNLOAD=true: the binary and images must already be in place."""
    if not os.access(K3S_BIN, os.X_OK):
        raise SystemExit("[ERROR]  /usr/local/bin/k3s is missing or not executable")
    if not any(AIRGAP_IMAGES.glob("k3s-airgap-images-*")):
        raise SystemExit(f"[ERROR]  no airgap images in {AIRGAP_IMAGES}")


def _write_kubeconfig(lab_kubeconfig: Path, mode: int) -> None:
    document = yaml.safe_load(lab_kubeconfig.read_text())
    cluster = document["clusters"][0]["cluster"]
    user = document["users"][0]["user"]
    cluster["server"] = "https://127.0.0.1:6443"
    k3s_style = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "default", "cluster": cluster}],
        "users": [{"name": "default", "user": user}],
        "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default"}}],
        "current-context": "default",
        "preferences": {},
    }
    KUBECONFIG.write_text(yaml.safe_dump(k3s_style))
    KUBECONFIG.chmod(mode)


if __name__ == "__main__":
    sys.exit(main())
