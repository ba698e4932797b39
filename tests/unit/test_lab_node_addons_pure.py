"""The real node's add-ons, their pure parts: kube-proxy's, CoreDNS' and local-path's
configuration, which KUBE-* rules `lab down` deletes, and what the lab's API server and
StorageClasses become beside a real node."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import yaml

from libresh_cli.lab import components, nodeaddons, realnode
from libresh_cli.lab.binaries import LabBinaries
from libresh_cli.lab.cluster import _serving_the_node
from libresh_cli.lab.components import LabLayout
from libresh_cli.lab.pki import LabPki

NODE = realnode.NodeLayout(Path("/s/lab/x/node"), "x", 7, 10250, "/", 4001, 4002, 4003)


def test_kube_proxy_uses_iptables_and_leaves_the_machines_settings() -> None:
    config = nodeaddons.kube_proxy_config(Path("/k"), "n", "10.85.7.0/24", 4001, 4002)
    assert config["mode"] == "iptables"
    assert config["hostnameOverride"] == "n"
    assert config["clusterCIDR"] == "10.85.7.0/24"
    assert config["healthzBindAddress"] == "127.0.0.1:4001"
    # 0: conntrack's sysctls are left as they are; no route_localnet.
    assert set(config["conntrack"].values()) == {0, "0s"}
    assert config["iptables"] == {"masqueradeAll": True, "localhostNodePorts": False}


def test_corefile_serves_the_cluster_domain_on_the_node_address() -> None:
    text = nodeaddons.corefile("10.85.7.1", 4003, Path("/lab/kubeconfig"))
    assert "bind 10.85.7.1" in text
    assert "ready 127.0.0.1:4003" in text
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa {" in text
    assert "kubeconfig /lab/kubeconfig" in text
    assert "forward . /etc/resolv.conf" in text
    assert text.count("{") == text.count("}")


def test_kubelet_points_pods_at_the_node_dns(tmp_path: Path) -> None:
    config = realnode.kubelet_config(NODE, LabPki(tmp_path), tmp_path)
    assert config["clusterDNS"] == ["10.85.7.1"]
    assert config["clusterDomain"] == "cluster.local"


def test_local_path_is_k3s_default_class_and_keeps_volumes_under_the_lab() -> None:
    manifests = {m["kind"]: m for m in nodeaddons.local_path_manifests()}
    storage = manifests["StorageClass"]
    assert storage["metadata"]["name"] == "local-path"
    assert storage["provisioner"] == "rancher.io/local-path"
    assert storage["volumeBindingMode"] == "WaitForFirstConsumer"
    assert storage["reclaimPolicy"] == "Delete"
    annotations = storage["metadata"]["annotations"]
    assert annotations["storageclass.kubernetes.io/is-default-class"] == "true"
    assert annotations["defaultVolumeType"] == "local"
    assert set(manifests["ConfigMap"]["data"]) == {"setup", "teardown"}
    config = json.loads(nodeaddons.local_path_config(NODE.volumes))
    assert config["nodePathMap"][0]["paths"] == ["/s/lab/x/node/volumes"]
    helper = json.loads(nodeaddons.local_path_helper_pod("docker.io/library/debian:x"))
    assert helper["spec"]["containers"][0]["imagePullPolicy"] == "Never"


def test_kwok_volumes_are_not_the_default_beside_a_real_node() -> None:
    annotations = components.storage_class_manifest(default=False)["metadata"]["annotations"]
    assert "storageclass.kubernetes.io/is-default-class" not in annotations
    default = components.storage_class_manifest()["metadata"]["annotations"]
    assert default["storageclass.kubernetes.io/is-default-class"] == "true"


def test_the_api_server_advertises_the_node_address_and_is_named_by_it() -> None:
    layout = _serving_the_node(LabLayout(Path("/s/lab/x"), 6443, 2379, 2380), NODE)
    assert layout.advertise_address == "10.85.7.1"
    assert "10.85.7.1" in layout.extra_names
    command = components.apiserver_command(
        LabBinaries(Path("/b")),
        layout,
    )
    assert "--advertise-address=10.85.7.1" in command
    assert "--bind-address=0.0.0.0" in command


def test_only_rules_jumping_to_kube_chains_are_deleted() -> None:
    rules = [
        '-A INPUT -m comment --comment "kubernetes health check" -j KUBE-NODEPORTS',
        "-A FORWARD -g KUBE-FORWARD",
        "-A INPUT -p tcp --dport 22 -j ACCEPT",
        "-A OUTPUT -j DOCKER-USER",
    ]
    jumps = [nodeaddons._jumps_to_kube(shlex.split(rule)) for rule in rules]
    assert jumps == [True, True, False, False]


def test_node_records_of_older_labs_still_read() -> None:
    record = yaml.safe_load(yaml.safe_dump(NODE.to_record()))
    assert realnode.NodeLayout.from_record(record) == NODE
    for key in ("proxy_healthz_port", "proxy_metrics_port", "dns_ready_port"):
        del record[key]
    assert realnode.NodeLayout.from_record(record).dns_ready_port == 0
