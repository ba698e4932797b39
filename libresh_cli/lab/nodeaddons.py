"""What a cluster's nodes get besides the kubelet, for the lab's real node: Services
(kube-proxy), cluster DNS (CoreDNS) and volumes (rancher's local-path-provisioner, as k3s ships
it). All three run as processes of the lab, beside the kubelet, with the lab's admin kubeconfig:
pure functions here from the node's layout to their configuration and command lines.

kube-proxy writes its iptables chains (KUBE-*) into this machine's tables, which every
Kubernetes on a machine shares: one lab with a real node at a time, and `lab down` removes them.
"""

from __future__ import annotations

import itertools
import json
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from libresh_cli.lab.binaries import AddonBinaries, LabBinaries

CLUSTER_DOMAIN = "cluster.local"
KUBE_PROXY = "kube-proxy"
COREDNS = "coredns"
LOCAL_PATH = "local-path-provisioner"
ADDON_COMPONENTS = (KUBE_PROXY, COREDNS, LOCAL_PATH)

# local-path, as k3s ships it (k3s-io/k3s manifests/local-storage.yaml): the StorageClass
# `local-path`, default, provisioner `rancher.io/local-path` (also the provisioner's default
# --provisioner-name, local-path-provisioner main.go), WaitForFirstConsumer, reclaim Delete,
# annotation defaultVolumeType "local" (PVs are `local` volumes with the node's affinity);
# the provisioner, its ServiceAccount and ConfigMap `local-path-config` in kube-system.
LOCAL_PATH_CLASS = "local-path"
LOCAL_PATH_PROVISIONER = "rancher.io/local-path"
LOCAL_PATH_NAMESPACE = "kube-system"
LOCAL_PATH_CONFIGMAP = "local-path-config"
LOCAL_PATH_SERVICE_ACCOUNT = "local-path-provisioner-service-account"


# --- kube-proxy ------------------------------------------------------------------------------


def kube_proxy_config(
    kubeconfig: Path, node_name: str, pod_subnet: str, healthz_port: int, metrics_port: int
) -> dict[str, Any]:
    """iptables mode. Nothing of the machine's own settings is changed that need not be:
    conntrack limits and timeouts are left as they are (0), and Services are not reachable on
    127.0.0.1 (localhostNodePorts would set net.ipv4.conf.all.route_localnet)."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "hostnameOverride": node_name,
        "clusterCIDR": pod_subnet,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        # Pod to Service to a pod on the same bridge: the answer must come back through this
        # machine to be un-NATed, which br_netfilter does on most machines; masquerading every
        # Service connection makes it so without br_netfilter too.
        "iptables": {"masqueradeAll": True, "localhostNodePorts": False},
    }


def kube_proxy_command(binaries: LabBinaries, config: Path) -> list[str]:
    return [str(binaries.controlplane), KUBE_PROXY, f"--config={config}", "--v=1"]


def remove_kube_chains() -> None:
    """Remove the KUBE-* chains of this machine's iptables (IPv4 and IPv6: kube-proxy and the
    kubelet write both), and the rules of the built-in chains that jump to them. What
    `kube-proxy --cleanup` does for its own chains, plus the kubelet's (KUBE-FIREWALL,
    KUBE-KUBELET-CANARY…)."""
    for command in ("iptables", "ip6tables"):
        binary = shutil.which(command, path="/usr/sbin:/sbin:/usr/bin:/bin")
        if binary is not None:
            for table in ("filter", "nat", "mangle"):
                _remove_chains_of_table(binary, table)


def _remove_chains_of_table(iptables: str, table: str) -> None:
    listed = subprocess.run(
        [iptables, "-w", "-t", table, "-S"], capture_output=True, text=True, check=False
    )
    if listed.returncode != 0:
        return
    lines = listed.stdout.splitlines()
    chains = [line.split()[1] for line in lines if line.startswith("-N KUBE-")]
    for line in lines:
        words = shlex.split(line)
        if words[:1] == ["-A"] and not words[1].startswith("KUBE-") and _jumps_to_kube(words):
            _iptables(iptables, table, "-D", *words[1:])
    for chain in chains:
        _iptables(iptables, table, "-F", chain)
    for chain in chains:
        _iptables(iptables, table, "-X", chain)


def _jumps_to_kube(words: list[str]) -> bool:
    return any(
        flag in ("-j", "-g") and target.startswith("KUBE-")
        for flag, target in itertools.pairwise(words)
    )


def _iptables(iptables: str, table: str, *args: str) -> None:
    subprocess.run([iptables, "-w", "-t", table, *args], capture_output=True, check=False)


def kube_chains() -> list[str]:
    """The KUBE-* chains of IPv4's nat and filter tables (what a test checks is gone)."""
    found = []
    for table in ("filter", "nat"):
        listed = subprocess.run(
            ["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True, check=False
        )
        found += [
            f"{table}/{line.split()[1]}"
            for line in listed.stdout.splitlines()
            if line.startswith("-N KUBE-")
        ]
    return found


# --- CoreDNS ---------------------------------------------------------------------------------


def corefile(listen_ip: str, ready_port: int, kubeconfig: Path) -> str:
    """Cluster DNS on the node's address, port 53 (where the kubelet points the pods): the
    kubernetes plugin answers for cluster.local and reverse lookups, the rest is forwarded to
    this machine's resolvers. As the `coredns` ConfigMap k3s ships (k3s-io/k3s
    manifests/coredns.yaml), less health, hosts, prometheus, loop, reload and loadbalance;
    plugin syntax from
    coredns/coredns plugin/*/README.md."""
    return f"""\
.:53 {{
    bind {listen_ip}
    errors
    ready 127.0.0.1:{ready_port}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    forward . /etc/resolv.conf
    cache 30
}}
"""


def coredns_command(addons: AddonBinaries, corefile_path: Path) -> list[str]:
    return [str(addons.addons), COREDNS, "-conf", str(corefile_path)]


# --- local-path-provisioner ------------------------------------------------------------------


def local_path_config(volumes_dir: Path) -> str:
    """config.json: every node keeps its volumes under the lab's directory."""
    node_paths = [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [str(volumes_dir)]}]
    return json.dumps({"nodePathMap": node_paths}, indent=2) + "\n"


def local_path_helper_pod(image: str) -> str:
    """The helper pod the provisioner starts on the node to make and remove a volume's
    directory (provisioner.go createHelperPod: it adds the hostPath of the parent directory,
    the scripts from the ConfigMap, the node's name and tolerations). k3s' is busybox; the
    real node has no registry, so it is the Debian image built here (sh, mkdir, chmod, rm)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "helper-pod"},
        "spec": {
            "containers": [{"name": "helper-pod", "image": image, "imagePullPolicy": "Never"}]
        },
    }
    return json.dumps(pod, indent=2) + "\n"


def local_path_manifests() -> list[dict[str, Any]]:
    """The cluster's side of local-path: its ServiceAccount (the helper pods run as it), the
    ConfigMap with the setup and teardown scripts the helper pods run (k3s' scripts), and
    the StorageClass."""
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": LOCAL_PATH_SERVICE_ACCOUNT, "namespace": LOCAL_PATH_NAMESPACE},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": LOCAL_PATH_CONFIGMAP, "namespace": LOCAL_PATH_NAMESPACE},
            "data": {
                "setup": '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "${VOL_DIR}"\n'
                'chmod 700 "${VOL_DIR}/.."\n',
                "teardown": '#!/bin/sh\nset -eu\nrm -rf "${VOL_DIR}"\n',
            },
        },
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": LOCAL_PATH_CLASS,
                "annotations": {
                    "defaultVolumeType": "local",
                    "storageclass.kubernetes.io/is-default-class": "true",
                },
            },
            "provisioner": LOCAL_PATH_PROVISIONER,
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Delete",
        },
    ]


def local_path_command(
    addons: AddonBinaries, kubeconfig: Path, config: Path, helper_pod: Path, helper_image: str
) -> list[str]:
    return [
        str(addons.local_path),
        "start",
        f"--kubeconfig={kubeconfig}",
        f"--config={config}",
        f"--helper-pod-file={helper_pod}",
        f"--helper-image={helper_image}",
        f"--namespace={LOCAL_PATH_NAMESPACE}",
        f"--configmap-name={LOCAL_PATH_CONFIGMAP}",
        f"--service-account-name={LOCAL_PATH_SERVICE_ACCOUNT}",
        f"--provisioner-name={LOCAL_PATH_PROVISIONER}",
    ]
