"""The kube adapter's errors, produced by a real API server (and a real closed port)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from libresh_cli.errors import BadInputError, ExitCode, NotFoundError, UnreachableError
from libresh_cli.kube.client import KubeApiError, KubeClient
from libresh_cli.kube.connection import KubeTarget
from libresh_cli.lab.processes import free_ports
from libresh_cli.settings import write_private_file
from tests.integration.conftest import LAB_TOKEN, Lab


def test_missing_objects_read_as_none_and_delete_as_false(kube: KubeClient) -> None:
    assert kube.get("v1", "ConfigMap", "does-not-exist", "default") is None
    assert kube.delete("v1", "ConfigMap", "does-not-exist", "default") is False


def test_an_invalid_object_is_bad_input_with_the_servers_reason(
    kube: KubeClient, namespace: str
) -> None:
    no_selector = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bad"},
        "spec": {"template": {"spec": {"containers": []}}},
    }
    with pytest.raises(KubeApiError) as raised:
        kube.apply(no_selector, namespace=namespace)
    assert raised.value.status == 422
    assert raised.value.exit_code == ExitCode.BAD_INPUT
    assert "spec.selector" in raised.value.message


def test_an_unknown_kind_says_what_is_missing(kube: KubeClient) -> None:
    with pytest.raises(NotFoundError, match=r"no Gadget in example\.org/v1") as raised:
        kube.apply({"apiVersion": "example.org/v1", "kind": "Gadget", "metadata": {"name": "g"}})
    assert "CustomResourceDefinition" in str(raised.value.hint)


def test_one_discovery_serves_many_applies(kube: KubeClient, namespace: str) -> None:
    maps = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"c{i}"},
            "data": {"i": str(i)},
        }
        for i in range(10)
    ]
    kube.apply_all(maps, namespace=namespace)  # warms discovery
    before = kube.request_count
    kube.apply_all(maps, namespace=namespace)
    assert kube.request_count - before == 10  # one PATCH per object, nothing else


def test_an_unreachable_cluster_names_the_server_and_kubeconfig(lab: Lab, tmp_path: Path) -> None:
    document = yaml.safe_load(lab.kubeconfig.read_text())
    (closed,) = free_ports(1)
    document["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{closed}"
    moved = tmp_path / "moved.kubeconfig"
    write_private_file(moved, yaml.safe_dump(document))
    with KubeClient.connect(KubeTarget(moved)) as kube, pytest.raises(UnreachableError) as raised:
        kube.list("v1", "Node")
    assert f"https://127.0.0.1:{closed}" in raised.value.message
    assert str(moved) in raised.value.message
    assert raised.value.exit_code == ExitCode.UNREACHABLE


def test_an_unknown_context_lists_the_known_ones(lab: Lab) -> None:
    with pytest.raises(BadInputError, match="The context 'nope' is not in") as raised:
        KubeClient.connect(KubeTarget(lab.kubeconfig, "nope"))
    assert "libresh-lab-pytest" in str(raised.value.hint)


def test_a_missing_kubeconfig_is_named(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"missing\.yaml does not exist"):
        KubeClient.connect(KubeTarget(tmp_path / "missing.yaml"))


def test_apply_all_returns_results_in_the_order_given(kube: KubeClient, namespace: str) -> None:
    manifests = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "s"},
            "spec": {"ports": [{"port": 80}]},
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}},
    ]
    results = kube.apply_all(manifests, namespace=namespace, dry_run=True)
    assert [r["kind"] for r in results] == ["Service", "ConfigMap", "Secret"]
    assert kube.get("v1", "ConfigMap", "c", namespace) is None  # a dry run stores nothing


def _kubeconfig_with_user(lab: Lab, path: Path, user: dict[str, object]) -> Path:
    """The lab's kubeconfig with its client certificate replaced by `user`'s credentials."""
    document = yaml.safe_load(lab.kubeconfig.read_text())
    document["users"][0]["user"] = user
    write_private_file(path, yaml.safe_dump(document))
    return path


def test_a_token_kubeconfig_sends_its_token(lab: Lab, tmp_path: Path) -> None:
    kubeconfig = _kubeconfig_with_user(lab, tmp_path / "token.yaml", {"token": LAB_TOKEN})
    with KubeClient.connect(KubeTarget(kubeconfig)) as kube:
        assert kube.get("v1", "Namespace", "default") is not None


def test_an_exec_plugin_kubeconfig_sends_the_token_it_prints(lab: Lab, tmp_path: Path) -> None:
    """As `aws eks get-token`, `kubelogin` or `gke-gcloud-auth-plugin` are used."""
    plugin = tmp_path / "plugin.sh"
    credential = (
        '{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", '
        f'"status": {{"token": "{LAB_TOKEN}"}}}}'
    )
    plugin.write_text(f"#!/bin/sh\nprintf '%s' '{credential}'\n")
    plugin.chmod(0o700)
    exec_user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": str(plugin),
            "interactiveMode": "Never",
        }
    }
    kubeconfig = _kubeconfig_with_user(lab, tmp_path / "exec.yaml", exec_user)
    with KubeClient.connect(KubeTarget(kubeconfig)) as kube:
        assert kube.get("v1", "Namespace", "default") is not None


def test_a_refused_token_says_the_credentials_were_refused(lab: Lab, tmp_path: Path) -> None:
    kubeconfig = _kubeconfig_with_user(lab, tmp_path / "wrong.yaml", {"token": "not-the-token"})
    with KubeClient.connect(KubeTarget(kubeconfig)) as kube, pytest.raises(KubeApiError) as error:
        kube.get("v1", "Namespace", "default")
    assert error.value.status == 401
    assert error.value.hint is not None and "refused" in error.value.hint
