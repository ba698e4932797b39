"""`libresh cluster create|status|scale|destroy` against the FAKE Hetzner API
(tests/fakes/hetzner_api.py, driven through the real hcloud SDK) and real sshd test hosts on a
private network playing the servers; k3s is the stand-in installer (tests/standin): the lab
control plane on the first server, join stand-ins registering their nodes with the token on
the others. Needs root (network namespaces)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from tests.fakes.hetzner_api import NOW, wait_until
from tests.integration.hacluster import HaLab, ha_lab

pytestmark = pytest.mark.timeout(900)


def kubectl(lab: HaLab, name: str, *args: str) -> str:
    kubeconfig = lab.config_home / "libresh" / "kubeconfigs" / f"{name}.yaml"
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def flat(text: str) -> str:
    """Output without the terminal's line wrapping."""
    return " ".join(text.split())


def creations(lab: HaLab) -> int:
    return sum(
        lab.fake.count("POST", f"/{kind}")
        for kind in ("ssh_keys", "networks", "firewalls", "placement_groups", "load_balancers",
                     "servers")
    )  # fmt: skip


# -- a full cluster: 3 servers, 2 agents, the API behind a public load balancer ------------


def coop_file(lab: HaLab) -> Path:
    return lab.cluster_file("coop", servers=3, agents=2, api_access="public_load_balancer")


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HaLab]:
    with ha_lab([71, 72, 73, 74, 75], tmp_path_factory.mktemp("ha"), max_per_page=2) as lab:
        yield lab


@pytest.fixture(scope="module")
def created(big: HaLab) -> subprocess.CompletedProcess[str]:
    for host in big.hosts:  # a join takes 1.5 s: long enough to see them overlap
        (host.var_lib / "rancher").mkdir(exist_ok=True)
        (host.var_lib / "rancher" / "standin-join-seconds").write_text("1.5")
    return big.create(coop_file(big))


def test_create_makes_the_cloud_resources_once_and_labelled(
    big: HaLab, created: subprocess.CompletedProcess[str]
) -> None:
    assert created.returncode == 0, created.stderr
    # The exposure is said: Hetzner Cloud Firewalls do not apply to load balancers.
    assert "6443 is open to the whole internet" in flat(created.stderr)
    fake = big.fake
    for kind in ("ssh_keys", "networks", "firewalls", "placement_groups", "load_balancers"):
        [resource] = fake.of_kind(kind)
        assert resource["labels"] == {"libresh.org/cluster": "coop"}, kind
    servers = {s["name"]: s for s in fake.of_kind("servers")}
    assert sorted(servers) == [
        "coop-agent-1", "coop-agent-2", "coop-server-1", "coop-server-2", "coop-server-3",
    ]  # fmt: skip
    assert servers["coop-server-2"]["labels"] == {
        "libresh.org/cluster": "coop", "libresh.org/role": "server", "libresh.org/index": "2",
    }  # fmt: skip
    assert servers["coop-server-2"]["location"]["name"] == "nbg1"  # round the locations
    assert all(s["private_net"] for s in servers.values())
    [group] = fake.of_kind("placement_groups")
    assert group["type"] == "spread"
    assert sorted(group["servers"]) == sorted(
        s["id"] for s in servers.values() if s["labels"]["libresh.org/role"] == "server"
    )
    assert fake.user_data["coop-agent-1"].startswith("#cloud-config")
    # Lists come a page of 2 at a time: hel1 (3rd location) is on page 2, and was found.
    assert fake.count("GET", "/locations") >= 3


def test_firewall_and_load_balancer(big: HaLab, created: subprocess.CompletedProcess[str]) -> None:
    [firewall] = big.fake.of_kind("firewalls")
    rules = {(r["protocol"], r["port"]): r["source_ips"] for r in firewall["rules"]}
    assert rules[("tcp", "22")] == ["10.77.0.0/16"]
    assert rules[("tcp", "6443")] == ["10.77.0.0/16", "127.0.0.0/8"]
    assert rules[("tcp", "80")] == rules[("tcp", "443")] == ["0.0.0.0/0", "::/0"]
    assert firewall["applied_to"][0]["label_selector"]["selector"] == "libresh.org/cluster=coop"
    [balancer] = big.fake.of_kind("load_balancers")
    [service] = balancer["services"]
    assert (service["listen_port"], service["destination_port"]) == (6443, 6443)
    [target] = balancer["target_specs"]
    assert target["use_private_ip"] is True
    assert "libresh.org/role=server" in target["label_selector"]["selector"]


def test_k3s_first_server_then_joins_at_the_same_time(
    big: HaLab, created: subprocess.CompletedProcess[str]
) -> None:
    first = big.timeline(big.host_of("coop-server-1"))
    others = [
        big.timeline(big.host_of(n))
        for n in ("coop-server-2", "coop-server-3", "coop-agent-1", "coop-agent-2")
    ]
    first_end = dict(first)["end"]
    starts = [dict(t)["start"] for t in others]
    ends = [dict(t)["end"] for t in others]
    assert min(starts) >= first_end  # nobody joined before the first server was up
    assert max(starts) < min(ends)  # every join had started before any had finished
    config = yaml.safe_load(
        (big.host_of("coop-agent-1").etc / "rancher/k3s/config.yaml").read_text()
    )
    first_private = big.network.address_of(big.host_of("coop-server-1"))
    assert config["server"] == f"https://{first_private}:6443"
    assert config["node-ip"] == big.network.address_of(big.host_of("coop-agent-1"))
    assert config["flannel-iface"] == "priv0"
    server = yaml.safe_load(
        (big.host_of("coop-server-1").etc / "rancher/k3s/config.yaml").read_text()
    )
    assert server["cluster-init"] is True
    assert "127.0.0.71" in server["tls-san"]  # the load balancer's address
    assert server["flannel-backend"] == "vxlan"
    assert server["token"] == config["token"]


def test_the_token_is_never_shown_or_logged(
    big: HaLab, created: subprocess.CompletedProcess[str]
) -> None:
    token = yaml.safe_load(
        (big.host_of("coop-server-1").etc / "rancher/k3s/config.yaml").read_text()
    )["token"]
    assert len(token) >= 32
    assert token not in created.stdout + created.stderr
    assert big.token not in created.stdout + created.stderr  # the Hetzner token neither
    for host in big.hosts:
        for log in (host.root / "var-log").rglob("*"):
            if log.is_file():
                assert token not in log.read_text(errors="replace"), log
        assert token not in host.sshd_log.read_text()
    kept = big.config_home / "libresh" / "clusters" / "coop" / "token"
    assert kept.stat().st_mode & 0o777 == 0o600


def test_kubeconfig_points_at_the_load_balancer_and_every_node_is_ready(
    big: HaLab, created: subprocess.CompletedProcess[str]
) -> None:
    report = json.loads(created.stdout)
    assert report["api_server"] == "https://127.0.0.71:6443"
    nodes = json.loads(kubectl(big, "coop", "get", "nodes", "-o", "json"))["items"]
    names = sorted(n["metadata"]["name"] for n in nodes)
    assert names == sorted(s["name"] for s in big.fake.of_kind("servers"))
    etcd = [n for n in nodes if n["metadata"]["labels"].get("node-role.kubernetes.io/etcd")]
    assert len(etcd) == 3
    secret = json.loads(
        kubectl(big, "coop", "get", "secret", "hcloud", "-n", "kube-system", "-o", "json")
    )
    import base64

    assert base64.b64decode(secret["data"]["token"]).decode() == big.token
    assert base64.b64decode(secret["data"]["network"]).decode() == "coop"
    assert report["trusted_host_keys"]["coop-server-1"][0].startswith("ED25519 SHA256:")


def test_status_shows_nodes_etcd_members_and_load_balancer_health(
    big: HaLab, created: subprocess.CompletedProcess[str]
) -> None:
    path = coop_file(big)
    result = big.run("-o", "json", "cluster", "status", "-f", str(path))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["etcd_members"] == ["coop-server-1", "coop-server-2", "coop-server-3"]
    assert data["load_balancer"]["targets"] == {
        "coop-server-1": "healthy", "coop-server-2": "healthy", "coop-server-3": "healthy",
    }  # fmt: skip
    assert all(n["ready"] for n in data["nodes"]) and len(data["nodes"]) == 5
    table = big.run("cluster", "status", "-f", str(path))
    assert "coop-agent-2" in table.stdout and "member" in table.stdout


def test_rerun_creates_nothing_and_changes_nothing(
    big: HaLab, created: subprocess.CompletedProcess[str]
) -> None:
    before = creations(big)
    mtimes = {h.index: (h.etc / "rancher/k3s/config.yaml").stat().st_mtime for h in big.hosts}
    again = big.create(coop_file(big))
    assert again.returncode == 0, again.stderr
    assert creations(big) == before
    report = json.loads(again.stdout)
    assert report["created"] == []
    assert set(report["k3s"].values()) == {"nothing"}
    assert mtimes == {
        h.index: (h.etc / "rancher/k3s/config.yaml").stat().st_mtime for h in big.hosts
    }

    # The cluster's known_hosts lost: the servers' keys were trusted once, so an unknown key
    # now is not trusted blindly (it could be a machine in the middle).
    known = big.config_home / "libresh" / "clusters" / "coop" / "known_hosts"
    saved = known.read_text()
    known.unlink()
    try:
        refused = big.create(coop_file(big))
        assert refused.returncode == 2, refused.stderr
        assert "trusted a key of this server before" in refused.stderr
        assert "ssh-keygen -lf" in refused.stderr and "Traceback" not in refused.stderr
    finally:
        known.write_text(saved)
        known.chmod(0o600)


# -- faults: each on a small cluster of its own (1 server, 1 agent) ------------------------


@pytest.fixture
def small(tmp_path: Path) -> Iterator[HaLab]:
    with ha_lab([76, 77, 78], tmp_path) as lab:
        yield lab


def server_names(lab: HaLab) -> list[str]:
    return sorted(s["name"] for s in lab.fake.of_kind("servers"))


def test_a_failed_server_action_then_a_rerun_completes_without_duplicates(small: HaLab) -> None:
    path = small.cluster_file("tiny", servers=1, agents=1)
    small.fake.faults.fail_actions["create_server"] = 1
    failed = small.create(path)
    assert failed.returncode == 1, failed.stderr
    assert (
        "create_server" in flat(failed.stderr)
        and "run the same command again" in flat(failed.stderr).lower()
    )
    assert len(small.fake.of_kind("servers")) == 1  # the failed one is gone, the other kept
    done = small.create(path)
    assert done.returncode == 0, done.stderr
    assert server_names(small) == ["tiny-agent-1", "tiny-server-1"]
    assert small.fake.count("POST", "/servers") == 3  # 2 + the one made again
    for kind in ("ssh_keys", "networks", "firewalls", "placement_groups"):
        assert len(small.fake.of_kind(kind)) == 1, kind
    assert small.fake.of_kind("load_balancers") == []  # api_access: firewall


def test_a_rate_limit_in_the_middle_is_waited_out(small: HaLab) -> None:
    small.fake.faults.rate_limit_after = 12
    small.fake.faults.rate_limited = 2
    done = small.create(small.cluster_file("tiny", servers=1, agents=1))
    assert done.returncode == 0, done.stderr
    assert small.fake.faults.rate_limited == 0  # both 429s were answered
    assert server_names(small) == ["tiny-agent-1", "tiny-server-1"]


def test_a_conflict_is_retried(small: HaLab) -> None:
    small.fake.faults.conflicts["POST /load_balancers"] = 1
    path = small.cluster_file("tiny", servers=1, agents=0, api_access="public_load_balancer")
    done = small.create(path)
    assert done.returncode == 0, done.stderr
    assert small.fake.count("POST", "/load_balancers") == 2
    assert len(small.fake.of_kind("load_balancers")) == 1


def test_api_access_firewall_makes_no_load_balancer_and_removes_an_old_one(
    small: HaLab,
) -> None:
    path = small.cluster_file("tiny", servers=1, agents=1)  # api_access: firewall (default)
    done = small.create(path)
    assert done.returncode == 0, done.stderr
    assert small.fake.of_kind("load_balancers") == []
    first = small.host_of("tiny-server-1").address
    assert json.loads(done.stdout)["api_server"] == f"https://{first}:6443"
    [firewall] = small.fake.of_kind("firewalls")
    rules = {(r["protocol"], r["port"]): r["source_ips"] for r in firewall["rules"]}
    assert rules[("tcp", "6443")] == ["10.77.0.0/16", "127.0.0.0/8"]  # allowed_networks.api
    config = yaml.safe_load(
        (small.host_of("tiny-server-1").etc / "rancher/k3s/config.yaml").read_text()
    )
    assert config["tls-san"] == [first]
    nodes = kubectl(small, "tiny", "get", "nodes", "-o", "name").split()
    assert sorted(nodes) == ["node/tiny-agent-1", "node/tiny-server-1"]
    status = small.run("-o", "json", "cluster", "status", "-f", str(path))
    assert status.returncode == 0, status.stdout + status.stderr
    data = json.loads(status.stdout)
    assert data["api_access"] == "firewall" and data["load_balancer"] is None
    # A load balancer an earlier libresh made for the API is deleted: its 6443 was public.
    old = {"name": "tiny-api", "load_balancer_type": "lb11", "location": "fsn1",
           "labels": {"libresh.org/cluster": "tiny"}, "services": [], "targets": []}  # fmt: skip
    made = requests.post(
        f"{small.fake.endpoint}/load_balancers",
        json=old,
        headers={"Authorization": f"Bearer {small.token}"},
        timeout=10,
    )
    assert made.status_code == 201, made.text
    again = small.create(path)
    assert again.returncode == 0, again.stderr
    assert small.fake.of_kind("load_balancers") == []
    assert "Deleted the load balancer tiny-api" in flat(again.stderr)


def test_an_ssh_drop_during_a_join_then_a_rerun_completes(small: HaLab) -> None:
    path = small.cluster_file("tiny", servers=1, agents=1)
    agent_host = small.hosts[1]  # the pool's second address goes to the second server made
    hold = agent_host.var_lib / "rancher" / "standin-hold"
    hold.parent.mkdir(parents=True, exist_ok=True)
    hold.write_text("")
    process = subprocess.Popen(
        [*small.create_command(path)], env=small.env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    started = agent_host.var_lib / "rancher" / "standin-started"
    assert wait_until(started.exists, timeout=240), "the join never started"
    agent_host.cut_connections()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 3, stderr
    assert "run the same command again" in flat(stderr).lower()
    hold.unlink()
    time.sleep(0.5)
    done = small.create(path)
    assert done.returncode == 0, done.stderr
    assert server_names(small) == ["tiny-agent-1", "tiny-server-1"]
    assert small.fake.count("POST", "/servers") == 2
    nodes = kubectl(small, "tiny", "get", "nodes", "-o", "name").split()
    assert sorted(nodes) == ["node/tiny-agent-1", "node/tiny-server-1"]


def test_scale_adds_agents_then_drains_and_removes_one(small: HaLab) -> None:
    path = small.cluster_file("tiny", servers=1, agents=1)
    assert small.create(path).returncode == 0
    script = str(small.hosts[0].standin_installer())
    grown = small.run("-o", "json", "cluster", "scale", "-f", str(path), "--agents", "2",
                      "--install-script", script)  # fmt: skip
    assert grown.returncode == 0, grown.stderr
    assert server_names(small) == ["tiny-agent-1", "tiny-agent-2", "tiny-server-1"]
    assert "agents.count: 1; set it to 2" in grown.stderr
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "on-agent-2", "namespace": "default"},
        "spec": {"nodeName": "tiny-agent-2", "containers": [{"name": "c", "image": "busybox"}]},
    }  # fmt: skip
    manifest = small.base / "pod.json"
    manifest.write_text(json.dumps(pod))
    kubectl(small, "tiny", "apply", "-f", str(manifest))
    refused = small.run("cluster", "scale", "-f", str(path), "--agents", "1")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    shrunk = small.run("cluster", "scale", "-f", str(path), "--agents", "1", "--yes",
                       "--install-script", script)  # fmt: skip
    assert shrunk.returncode == 0, shrunk.stderr
    assert "Draining tiny-agent-2" in shrunk.stderr
    assert server_names(small) == ["tiny-agent-1", "tiny-server-1"]
    nodes = kubectl(small, "tiny", "get", "nodes", "-o", "name").split()
    assert sorted(nodes) == ["node/tiny-agent-1", "node/tiny-server-1"]
    assert "on-agent-2" not in kubectl(small, "tiny", "get", "pods", "-o", "name")


def test_destroy_asks_for_the_name_and_removes_only_what_is_labelled(small: HaLab) -> None:
    path = small.cluster_file("tiny", servers=1, agents=0)
    assert small.create(path).returncode == 0
    foreign = small.run("cluster", "status", "-f", str(small.cluster_file("other", 1, 0)))
    assert foreign.returncode == 1  # nothing there: not healthy
    with small.fake.lock:  # a key of the project that is not the cluster's
        small.fake.resources["ssh_keys"][1] = {"id": 1, "name": "someone", "labels": {},
                                               "public_key": "ssh-ed25519 AAAB", "fingerprint": "x",
                                               "created": NOW}  # fmt: skip
    no_tty = small.run("cluster", "destroy", "-f", str(path))
    assert no_tty.returncode == 2 and "destroy tiny -f FILE --yes" in no_tty.stderr
    unnamed = small.run("cluster", "destroy", "-f", str(path), "--yes")
    assert unnamed.returncode == 2 and "needs its name beside --yes" in unnamed.stderr
    dry = small.run("-o", "json", "cluster", "destroy", "-f", str(path), "--dry-run")
    assert "delete server tiny-server-1" in json.loads(dry.stdout)["would"], dry.stderr
    wrong = small.run("cluster", "destroy", "-f", str(path), "--yes", "tinny")
    assert wrong.returncode == 2 and "nothing was deleted" in wrong.stderr
    assert len(small.fake.of_kind("servers")) == 1
    done = small.run("-o", "json", "cluster", "destroy", "-f", str(path), "--yes", "tiny")
    assert done.returncode == 0, done.stderr
    assert "server tiny-server-1" in json.loads(done.stdout)["deleted"]
    for kind in ("servers", "networks", "firewalls", "placement_groups", "load_balancers"):
        assert small.fake.of_kind(kind) == [], kind
    assert [k["name"] for k in small.fake.of_kind("ssh_keys")] == ["someone"]


# -- bad input: refused before anything is created ---------------------------------------


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HaLab]:
    with ha_lab([79], tmp_path_factory.mktemp("bare")) as lab:
        yield lab


def test_unknown_location_and_server_type_list_the_valid_ones(bare: HaLab) -> None:
    path = bare.cluster_file("bad", 3, 1, server_type="cx99", locations=["fsn9"])
    result = bare.create(path)
    assert result.returncode == 2
    assert "locations[0]: 'fsn9' is not a location (valid: ash, fsn1, hel1" in flat(result.stderr)
    assert "servers.type: 'cx99' is not a server type Hetzner offers (valid: cax11, cax21" in (
        flat(result.stderr)
    )
    assert creations(bare) == 0


def test_even_server_count_is_warned_about(bare: HaLab) -> None:
    bare.fake.faults.server_quota = 0  # and stop it there: the quota is exceeded
    path = bare.cluster_file("even", 2, 0)
    result = bare.create(path)
    bare.fake.faults.server_quota = None
    said = flat(result.stderr)
    assert "servers.count is 2: etcd needs a majority" in said
    assert result.returncode == 6, result.stderr
    assert "(quota) are reached" in said and "server limit of 0 exceeded" in said


def test_missing_and_refused_tokens_name_where_they_were_read(bare: HaLab, tmp_path: Path) -> None:
    path = bare.cluster_file("tok", 1, 0)
    env = bare.env()
    del env["HCLOUD_TOKEN"]
    missing = bare.run("cluster", "create", "-f", str(path), env=env)
    assert missing.returncode == 6 and "HCLOUD_TOKEN is not set" in missing.stderr
    token_file = tmp_path / "token"
    token_file.write_text("b" * 64 + "\n")
    token_file.chmod(0o644)
    loose = bare.run("cluster", "create", "-f", str(path), "--token-file", str(token_file), env=env)
    assert loose.returncode == 2 and "chmod 600" in loose.stderr
    token_file.chmod(0o600)
    refused = bare.run(
        "cluster", "create", "-f", str(path), "--token-file", str(token_file), env=env
    )
    assert refused.returncode == 2
    assert f"Hetzner refused the API token read from the file {token_file}" in flat(refused.stderr)
    assert "b" * 64 not in refused.stderr
    malformed = bare.run("cluster", "create", "-f", str(path), env=bare.env(HCLOUD_TOKEN="x y"))
    assert malformed.returncode == 2 and "environment variable HCLOUD_TOKEN" in malformed.stderr


def test_an_unlabelled_resource_with_the_same_name_is_not_taken_over(bare: HaLab) -> None:
    with bare.fake.lock:
        bare.fake.resources["networks"][2] = {"id": 2, "name": "taken", "labels": {},
                                              "ip_range": "10.0.0.0/16", "subnets": [],
                                              "routes": [], "servers": [], "load_balancers": [],
                                              "protection": {"delete": False}, "created": NOW,
                                              "expose_routes_to_vswitch": False}  # fmt: skip
    result = bare.create(bare.cluster_file("taken", 1, 0))
    assert result.returncode == 5, result.stderr
    assert "A network named taken already exists" in flat(result.stderr)
    assert "label it libresh.org/cluster=taken" in flat(result.stderr)
