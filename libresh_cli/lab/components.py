"""How each lab daemon is started: pure functions from the lab's layout to command lines."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from libresh_cli.lab.binaries import LabBinaries
from libresh_cli.lab.pki import SERVICE_CLUSTER_IP_RANGE, LabPki

# Nodes created by the lab carry this annotation; kwok manages exactly those.
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
FAILING_POD_LABEL = "lab.libresh.dev/fail"
# The StorageClass kwok's volume stages provision for; the lab makes it the default one.
STORAGE_CLASS = "kwok-volume"
KWOK_PROVISIONER = "kwok.x-k8s.io/volume"


@dataclass(frozen=True)
class LabLayout:
    directory: Path
    api_port: int
    etcd_port: int
    etcd_peer_port: int
    # The k3s stand-in serves on every address of its test host, like k3s does.
    bind_address: str = "127.0.0.1"
    extra_names: tuple[str, ...] = ()
    # The k3s stand-in's join token: accepted as a bearer token, as k3s accepts it from joining
    # nodes (the HA tests' join stand-ins register their nodes with it).
    join_token: str | None = field(default=None, repr=False)
    # The address the `kubernetes` Service's endpoint names: a real node's pods reach the API
    # server there (the node's bridge address), so it serves on every address then.
    advertise_address: str = "127.0.0.1"

    @property
    def token_file(self) -> Path:
        return self.directory / "join-tokens.csv"

    @property
    def pki(self) -> LabPki:
        return LabPki(self.directory / "pki")

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    def log(self, component: str) -> Path:
        return self.directory / "logs" / f"{component}.log"


def etcd_command(binaries: LabBinaries, layout: LabLayout) -> list[str]:
    """etcd over TLS with client certificates, clients and peers alike: loopback is shared
    with every local user."""
    client = f"https://127.0.0.1:{layout.etcd_port}"
    peer = f"https://127.0.0.1:{layout.etcd_peer_port}"
    pki = layout.pki
    return [
        str(binaries.controlplane),
        "etcd",
        "--name=lab",
        f"--data-dir={layout.directory / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=lab={peer}",
        f"--cert-file={pki.etcd_cert}",
        f"--key-file={pki.etcd_key}",
        f"--trusted-ca-file={pki.ca_cert}",
        "--client-cert-auth=true",
        f"--peer-cert-file={pki.etcd_cert}",
        f"--peer-key-file={pki.etcd_key}",
        f"--peer-trusted-ca-file={pki.ca_cert}",
        "--peer-client-cert-auth=true",
        # A lab's data is thrown away with it: skipping fsync makes every write much faster.
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def apiserver_command(binaries: LabBinaries, layout: LabLayout) -> list[str]:
    pki = layout.pki
    return [
        str(binaries.controlplane),
        "kube-apiserver",
        f"--etcd-servers=https://127.0.0.1:{layout.etcd_port}",
        f"--etcd-cafile={pki.ca_cert}",
        f"--etcd-certfile={pki.etcd_client_cert}",
        f"--etcd-keyfile={pki.etcd_client_key}",
        f"--bind-address={layout.bind_address}",
        f"--advertise-address={layout.advertise_address}",
        f"--secure-port={layout.api_port}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca_cert}",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        # RBAC as on k3s, so least-privilege rules are exercised for real.
        "--authorization-mode=Node,RBAC",
        "--allow-privileged=true",
        "--profiling=false",
        # Logs, exec and port-forward reach a real node's kubelet at its address, over TLS
        # checked against the lab's CA, as the lab's admin (kwok's nodes never serve them).
        "--kubelet-preferred-address-types=InternalIP",
        f"--kubelet-certificate-authority={pki.ca_cert}",
        f"--kubelet-client-certificate={pki.admin_cert}",
        f"--kubelet-client-key={pki.admin_key}",
        *([f"--token-auth-file={layout.token_file}"] if layout.join_token else []),
    ]


def controller_manager_command(binaries: LabBinaries, layout: LabLayout) -> list[str]:
    pki = layout.pki
    return [
        str(binaries.controlplane),
        "kube-controller-manager",
        f"--kubeconfig={layout.kubeconfig}",
        "--leader-elect=false",
        # No metrics/health endpoint: one port less to find free; liveness is the process.
        "--secure-port=0",
        f"--service-account-private-key-file={pki.service_account_key}",
        f"--root-ca-file={pki.ca_cert}",
        f"--cluster-signing-cert-file={pki.ca_cert}",
        f"--cluster-signing-key-file={pki.ca_key}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        "--use-service-account-credentials=false",
    ]


def scheduler_command(binaries: LabBinaries, layout: LabLayout) -> list[str]:
    return [
        str(binaries.controlplane),
        "kube-scheduler",
        f"--kubeconfig={layout.kubeconfig}",
        "--leader-elect=false",
        "--secure-port=0",
    ]


def stage_files(binaries: LabBinaries) -> list[Path]:
    """kwok's default stages from the build, then libresh's own (failing pods, the backup
    runner's stand-in)."""
    shipped = sorted(binaries.stages.glob("*.yaml"))
    ours = resources.files(__package__).joinpath("stages")
    return [*shipped, *sorted(Path(str(ours)).glob("*.yaml"))]


def kwok_command(binaries: LabBinaries, layout: LabLayout) -> list[str]:
    return [
        str(binaries.kwok),
        f"--kubeconfig={layout.kubeconfig}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
        "--cidr=10.244.0.0/16",
        "--node-ip=10.0.0.1",
        *[f"--config={path}" for path in stage_files(binaries)],
    ]


def node_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                "node.libresh.dev/lab": "true",
            },
        },
        "spec": {},
    }


def storage_class_manifest(default: bool = True) -> dict[str, Any]:
    """kwok's volumes; not the default class beside a real node, whose `local-path` is (as on
    k3s): a claim without a class gets a real directory."""
    annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS, "annotations": annotations},
        "provisioner": KWOK_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }


def kubeconfig_document(
    name: str, server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes
) -> dict[str, Any]:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    context = f"libresh-lab-{name}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": context,
                "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": f"{context}-admin",
                "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)},
            }
        ],
        "contexts": [
            {"name": context, "context": {"cluster": context, "user": f"{context}-admin"}}
        ],
        "current-context": context,
    }
