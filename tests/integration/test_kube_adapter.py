"""The kube adapter's errors, produced by a real API server (and a real closed port)."""

from __future__ import annotations

import socket
import threading
import uuid
from pathlib import Path

import pytest
import yaml

from libresh_cli.errors import BadInputError, ExitCode, NotFoundError, UnreachableError
from libresh_cli.kube import client as client_module
from libresh_cli.kube.client import KubeApiError, KubeClient, wait_for
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


def _exec_kubeconfig(lab: Lab, tmp_path: Path, plugin: Path) -> Path:
    """The lab's kubeconfig whose user's credentials come from the exec plugin `plugin`."""
    plugin.chmod(0o700)
    exec_user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": str(plugin),
            "interactiveMode": "Never",
        }
    }
    return _kubeconfig_with_user(lab, tmp_path / "exec.yaml", exec_user)


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
    kubeconfig = _exec_kubeconfig(lab, tmp_path, plugin)
    with KubeClient.connect(KubeTarget(kubeconfig)) as kube:
        assert kube.get("v1", "Namespace", "default") is not None


def test_a_refused_token_says_the_credentials_were_refused(lab: Lab, tmp_path: Path) -> None:
    kubeconfig = _kubeconfig_with_user(lab, tmp_path / "wrong.yaml", {"token": "not-the-token"})
    with KubeClient.connect(KubeTarget(kubeconfig)) as kube, pytest.raises(KubeApiError) as error:
        kube.get("v1", "Namespace", "default")
    assert error.value.status == 401
    assert error.value.hint is not None and "refused" in error.value.hint


def test_tls_server_name_is_the_name_the_certificate_is_checked_against(
    lab: Lab, tmp_path: Path
) -> None:
    document = yaml.safe_load(lab.kubeconfig.read_text())
    cluster = document["clusters"][0]["cluster"]
    cluster["tls-server-name"] = "kubernetes.default"  # one of the serving certificate's names
    good = tmp_path / "good.yaml"
    write_private_file(good, yaml.safe_dump(document))
    with KubeClient.connect(KubeTarget(good)) as kube:
        assert kube.get("v1", "Namespace", "default") is not None
    cluster["tls-server-name"] = "not-the-api.example.org"
    wrong = tmp_path / "wrong.yaml"
    write_private_file(wrong, yaml.safe_dump(document))
    with KubeClient.connect(KubeTarget(wrong)) as kube, pytest.raises(UnreachableError) as raised:
        kube.get("v1", "Namespace", "default")
    assert (
        "not-the-api.example.org" in raised.value.message or "certificate" in raised.value.message
    )


class ConnectProxy:
    """A minimal HTTP CONNECT proxy on localhost that counts the tunnels it opened."""

    def __init__(self) -> None:
        self.tunnels = 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            request += client.recv(4096)
        host, port = request.split()[1].decode().rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        self.tunnels += 1
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        self.listener.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        sink.close()


def test_the_kubeconfigs_proxy_url_is_used(lab: Lab, tmp_path: Path) -> None:
    proxy = ConnectProxy()
    try:
        document = yaml.safe_load(lab.kubeconfig.read_text())
        document["clusters"][0]["cluster"]["proxy-url"] = proxy.url
        proxied = tmp_path / "proxied.yaml"
        write_private_file(proxied, yaml.safe_dump(document))
        with KubeClient.connect(KubeTarget(proxied)) as kube:
            assert kube.get("v1", "Namespace", "default") is not None
        assert proxy.tunnels >= 1
    finally:
        proxy.close()


def test_impersonation_is_sent(lab: Lab, tmp_path: Path) -> None:
    document = yaml.safe_load(lab.kubeconfig.read_text())
    user = document["users"][0]["user"]
    user["as"] = "nobody-in-particular"
    as_nobody = tmp_path / "nobody.yaml"
    write_private_file(as_nobody, yaml.safe_dump(document))
    with KubeClient.connect(KubeTarget(as_nobody)) as kube, pytest.raises(KubeApiError) as e:
        kube.get("v1", "Namespace", "default")
    assert e.value.status == 403  # the API server acted as that user, who may not read it
    user["as-groups"] = ["system:masters"]
    as_admin = tmp_path / "admin.yaml"
    write_private_file(as_admin, yaml.safe_dump(document))
    with KubeClient.connect(KubeTarget(as_admin)) as kube:
        assert kube.get("v1", "Namespace", "default") is not None


def test_a_refused_exec_token_is_renewed_once(lab: Lab, tmp_path: Path) -> None:
    """A token refused before its expiry (revoked, rotated): the plugin is asked again."""
    calls = tmp_path / "calls"
    plugin = tmp_path / "plugin.sh"
    credential = (
        '{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", '
        '"status": {"token": "%s"}}'
    )
    plugin.write_text(
        "#!/bin/sh\n"
        f"echo x >> {calls}\n"
        f'if [ "$(wc -l < {calls})" -le 1 ]; then token=revoked; else token={LAB_TOKEN}; fi\n'
        f"printf '{credential}' \"$token\"\n"
    )
    kubeconfig = _exec_kubeconfig(lab, tmp_path, plugin)
    with KubeClient.connect(KubeTarget(kubeconfig)) as kube:
        assert kube.get("v1", "Namespace", "default") is not None
    assert len(calls.read_text().splitlines()) == 2


def test_lists_are_read_in_pages(
    kube: KubeClient, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "LIST_PAGE", 2)
    maps = [_configmap(f"page-{i}", namespace) for i in range(5)]
    kube.apply_all(maps)
    before = kube.request_count
    names = sorted(m["metadata"]["name"] for m in kube.list("v1", "ConfigMap", namespace))
    assert [n for n in names if n.startswith("page-")] == [f"page-{i}" for i in range(5)]
    assert kube.request_count - before >= 3  # 5+ items, 2 per page


def test_a_poller_never_goes_back_in_time(kube: KubeClient, namespace: str) -> None:
    kube.apply(_configmap("polled", namespace, "1"))
    poll = kube.poller()
    assert (poll.get("v1", "ConfigMap", "polled", namespace) or {})["data"] == {"v": "1"}
    kube.apply(_configmap("polled", namespace, "2"))

    def changed() -> dict[str, str] | None:
        data = (poll.get("v1", "ConfigMap", "polled", namespace) or {}).get("data")
        return data if data == {"v": "2"} else None

    assert wait_for("the change", changed, timeout=10) == {"v": "2"}
    # Once seen, never an older one: every later read names the version seen.
    for _ in range(5):
        assert (poll.get("v1", "ConfigMap", "polled", namespace) or {})["data"] == {"v": "2"}
    assert any(m["metadata"]["name"] == "polled" for m in poll.list("v1", "ConfigMap", namespace))


def test_custom_objects_applied_with_their_crd_wait_for_it(
    kube: KubeClient, namespace: str
) -> None:
    group = f"g{uuid.uuid4().hex[:8]}.example.org"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    widget = {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": namespace},
        "spec": {"size": 3},
    }
    try:
        applied = kube.apply_all([widget, crd])  # one call, in any order
        assert applied[0]["spec"] == {"size": 3}
    finally:
        kube.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", f"widgets.{group}")


def _configmap(name: str, namespace: str, value: str = "x") -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"v": value},
    }
