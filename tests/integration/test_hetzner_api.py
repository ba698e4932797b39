"""libresh's Hetzner adapter and cloud service against the FAKE Hetzner API
(tests/fakes/hetzner_api.py), through the real hcloud SDK, on the rules of the real API that
broke libresh before (issue 19): a firewall still applied cannot be deleted, `locked` is not
retried by the SDK, server types are offered per location, a server may be left off, a
request the SDK sends again after a timeout meets what the first one made. No SSH hosts: the
servers' addresses are only strings here."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from libresh_cli.cluster.hetzner.catalog import check_against_catalog
from libresh_cli.cluster.hetzner.destroy import destroy
from libresh_cli.cluster.hetzner.report import CreateReport
from libresh_cli.cluster.hetzner.resources import CloudParts
from libresh_cli.cluster.hetzner.servers import ensure_servers
from libresh_cli.cluster.spec import ClusterSpec, NodeGroup
from libresh_cli.errors import BadInputError, OperationFailedError
from libresh_cli.hetzner.cloud import HetznerCloud, LoadBalancerInfo, Rule, ServerRequest
from libresh_cli.progress import SilentReporter
from libresh_cli.settings import Paths
from tests.fakes.hetzner_api import FakeHetzner, PoolAddress

pytestmark = pytest.mark.timeout(120)
LABELS = {"libresh.org/cluster": "coop"}


@pytest.fixture
def fake() -> Iterator[FakeHetzner]:
    pool = [PoolAddress(f"192.0.2.{i}", f"10.0.0.{i}") for i in range(10, 40)]
    api = FakeHetzner(secrets.token_hex(32), pool, polls_to_finish=1).start()
    yield api
    api.stop()


def cloud_of(fake: FakeHetzner, **options: float | tuple[float, float]) -> HetznerCloud:
    options.setdefault("creation_spread", 0.0)
    options.setdefault("retry_base", 0.05)
    return HetznerCloud(fake.token, "the test", fake.endpoint, **options)


def spec_of(
    servers: str = "cx23",
    agents: str = "cx33",
    locations: tuple[str, ...] = ("fsn1", "nbg1"),
    count: int = 3,
) -> ClusterSpec:
    return ClusterSpec(
        name="coop",
        locations=locations,
        image="debian-12",
        ssh_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey coop",
        ssh_identity=None,
        servers=NodeGroup(servers, count),
        agents=NodeGroup(agents, 2),
        ssh_from=("203.0.113.7/32",),
        api_from=("203.0.113.7/32",),
        private_network="10.0.0.0/16",
        k3s_version="v1.34.4+k3s1",
        email=None,
    )


def request_for(name: str, ssh_key: int, **fields: object) -> ServerRequest:
    values: dict[str, object] = {
        "name": name, "server_type": "cx23", "image": "debian-12", "location": "fsn1",
        "labels": {**LABELS, "libresh.org/role": "agent"}, "user_data": "#cloud-config\n",
        "ssh_key_id": ssh_key, "network_id": None, "placement_group_id": None, **fields,
    }  # fmt: skip
    return ServerRequest(**values)


def parts_of(cloud: HetznerCloud) -> CloudParts:
    key = cloud.ensure_ssh_key("coop", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey coop", LABELS)
    group = cloud.ensure_placement_group("coop", LABELS)
    balancer = LoadBalancerInfo(0, "none", None, None)
    return CloudParts(key.id, None, None, group.id, balancer)


# -- point 1: destroy goes through the firewall ------------------------------------------


def test_destroy_removes_the_applied_firewall_then_everything_else(
    fake: FakeHetzner, tmp_path: Path
) -> None:
    cloud = cloud_of(fake)
    parts = parts_of(cloud)
    network = cloud.ensure_network("coop", "10.0.0.0/16", "10.0.0.0/24", "eu-central", LABELS)
    rule = Rule("SSH", "tcp", "22", ("203.0.113.7/32",))
    cloud.ensure_firewall("coop", [rule], LABELS, LABELS)
    cloud.create_server(request_for("coop-agent-1", parts.ssh_key_id, network_id=network.id))
    paths = Paths(tmp_path / "c", tmp_path / "d", tmp_path / "s", tmp_path / "k")
    deleted = destroy(cloud, "coop", LABELS, paths, SilentReporter())
    assert "firewall coop" in deleted and "network coop" in deleted
    for kind in ("servers", "firewalls", "placement_groups", "networks", "ssh_keys"):
        assert fake.of_kind(kind) == [], kind
    assert fake.count("POST", r"/firewalls/\d+/actions/remove_from_resources") == 1


def test_the_fake_refuses_to_delete_an_applied_firewall_even_with_no_server_left(
    fake: FakeHetzner,
) -> None:
    cloud = cloud_of(fake)
    cloud.ensure_firewall("coop", [Rule("SSH", "tcp", "22", ("0.0.0.0/0",))], LABELS, LABELS)
    [firewall] = fake.of_kind("firewalls")
    answer = requests.delete(
        f"{fake.endpoint}/firewalls/{firewall['id']}",
        headers={"Authorization": f"Bearer {fake.token}"},
        timeout=5,
    )
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "resource_in_use"


def test_a_network_is_deleted_with_its_servers_detached(fake: FakeHetzner) -> None:
    cloud = cloud_of(fake)
    parts = parts_of(cloud)
    network = cloud.ensure_network("coop", "10.0.0.0/16", "10.0.0.0/24", "eu-central", LABELS)
    cloud.create_server(request_for("coop-agent-1", parts.ssh_key_id, network_id=network.id))
    cloud.delete_labelled(LABELS)
    [server] = fake.of_kind("servers")
    assert server["private_net"] == [] and fake.of_kind("networks") == []


# -- point 3: server types per location ---------------------------------------------------


def test_server_types_are_checked_in_every_location_of_their_nodes(fake: FakeHetzner) -> None:
    cloud = cloud_of(fake)
    check_against_catalog(cloud, spec_of())  # today's types in the EU: fine
    fake.faults.sold_out.add(("cx33", "nbg1"))
    with pytest.raises(BadInputError) as refused:
        check_against_catalog(cloud, spec_of("cpx21", "cx33", ("fsn1", "ash")))
    said = refused.value.message
    # cpx21 (CPX Gen 1) is gone from the EU but still offered in the US
    assert "servers.type: cpx21 is deprecated in fsn1 (Hetzner no longer creates it there)" in said
    assert "x86 types available in fsn1: cpx22, cpx32, cx23, cx33, cx43" in said
    # agents go to fsn1 and ash: CX is not offered outside the EU
    assert "agents.type: cx33 is not offered in ash" in said
    assert "cx33 is available in: fsn1, hel1" in said  # sold out in nbg1
    with pytest.raises(BadInputError) as gone:
        check_against_catalog(cloud, spec_of("cx22"))
    assert "servers.type: 'cx22' is not a server type Hetzner offers (valid: cax11" in (
        gone.value.message
    )
    with pytest.raises(BadInputError) as sold_out:
        check_against_catalog(cloud, spec_of("cx23", "cx33", ("nbg1",)))
    assert "agents.type: cx33 is sold out in nbg1 for now" in sold_out.value.message


def test_the_fake_refuses_a_type_where_it_is_not_offered(fake: FakeHetzner) -> None:
    cloud = cloud_of(fake)
    key = parts_of(cloud).ssh_key_id
    with pytest.raises(BadInputError) as refused:
        cloud.create_server(request_for("coop-agent-1", key, location="ash"))
    assert "unsupported location for server type (invalid_input)" in refused.value.message
    fake.faults.sold_out.add(("cx23", "fsn1"))
    with pytest.raises(OperationFailedError) as sold_out:
        cloud.create_server(request_for("coop-agent-1", key))
    assert "(resource_unavailable)" in sold_out.value.message
    assert "another type or location" in str(sold_out.value.hint)


# -- point 4: creations spread and retried, servers left off, lost answers --------------


def test_locked_creations_are_tried_again(fake: FakeHetzner) -> None:
    cloud = cloud_of(fake)
    key = parts_of(cloud).ssh_key_id
    fake.faults.locked["POST /servers"] = 2
    server = cloud.create_server(request_for("coop-agent-1", key))
    assert server.status == "running"
    assert fake.count("POST", "/servers") == 3


def test_creations_started_together_are_spread_out(fake: FakeHetzner) -> None:
    cloud = cloud_of(fake, creation_spread=1.5)
    spec = spec_of()
    ensure_servers(cloud, spec, parts_of(cloud), CreateReport("coop"), SilentReporter())
    posts = sorted(t for m, p, t in fake.times if m == "POST" and p == "/servers")
    assert len(posts) == 5
    assert posts[-1] - posts[0] > 0.2  # five uniform draws over 1.5 s


def test_a_server_left_off_is_powered_on(fake: FakeHetzner) -> None:
    cloud = cloud_of(fake)
    fake.faults.fail_actions["start_server"] = 1
    report = CreateReport("coop")
    made = ensure_servers(cloud, spec_of(), parts_of(cloud), report, SilentReporter(), agents=0)
    assert {s.status for s in made} == {"running"}
    assert {s["status"] for s in fake.of_kind("servers")} == {"running"}
    assert fake.count("POST", r"/servers/\d+/actions/poweron") == 1
    assert fake.count("POST", "/servers") == 3


def test_a_new_server_that_will_not_start_is_made_again(fake: FakeHetzner) -> None:
    cloud = cloud_of(fake)
    fake.faults.fail_actions["start_server"] = 2  # its start, then the power-on
    report = CreateReport("coop")
    spec = spec_of(count=1)
    made = ensure_servers(cloud, spec, parts_of(cloud), report, SilentReporter(), agents=0)
    assert len(made) == 1 and {s.status for s in made} == {"running"}
    assert fake.count("POST", "/servers") == 2  # made again
    assert fake.count("DELETE", r"/servers/\d+") == 1
    assert len(fake.of_kind("servers")) == 1


def test_a_known_server_that_will_not_start_is_not_replaced(fake: FakeHetzner) -> None:
    cloud = cloud_of(fake)
    parts = parts_of(cloud)
    spec = spec_of()
    ensure_servers(cloud, spec, parts, CreateReport("coop"), SilentReporter(), agents=0)
    with fake.lock:
        for server in fake.resources["servers"].values():
            server["status"] = "off"
    fake.faults.fail_actions["start_server"] = 3
    with pytest.raises(OperationFailedError) as refused:
        ensure_servers(
            cloud, spec, parts, CreateReport("coop"), SilentReporter(), agents=0,
            trusted=frozenset({"coop-server-1"}),
        )  # fmt: skip
    assert "could not start the server coop-server-1" in refused.value.message
    assert "hcloud server poweron coop-server-1" in str(refused.value.hint)
    assert fake.count("DELETE", r"/servers/\d+") == 0


def test_a_creation_whose_answer_was_lost_is_recognised_as_ours(fake: FakeHetzner) -> None:
    # The answer comes after the SDK's read timeout: it sends the POST again, which meets the
    # server the first one made (uniqueness_error).
    cloud = cloud_of(fake, timeout=(2.0, 1.0))
    key = parts_of(cloud).ssh_key_id
    fake.faults.late_seconds = 1.5
    fake.faults.late_answers["POST /servers"] = 1
    server = cloud.create_server(request_for("coop-agent-1", key))
    assert server.name == "coop-agent-1" and server.status == "running"
    assert fake.count("POST", "/servers") == 2 and len(fake.of_kind("servers")) == 1
    fake.faults.late_answers["POST /networks"] = 1
    ensured = cloud.ensure_network("coop", "10.0.0.0/16", "10.0.0.0/24", "eu-central", LABELS)
    assert ensured.created and len(fake.of_kind("networks")) == 1


def test_a_server_of_the_same_name_without_our_labels_is_not_taken(fake: FakeHetzner) -> None:
    cloud = cloud_of(fake)
    key = parts_of(cloud).ssh_key_id
    cloud.create_server(request_for("coop-agent-1", key, labels={"someone": "else"}))
    with pytest.raises(Exception, match="without this cluster's labels"):
        cloud.create_server(request_for("coop-agent-1", key))


def test_refusals_come_with_a_hint_each(fake: FakeHetzner) -> None:
    read_only = secrets.token_hex(32)
    fake.read_only_token = read_only
    with pytest.raises(BadInputError) as readonly:
        HetznerCloud(read_only, "HCLOUD_TOKEN", fake.endpoint).ensure_placement_group("x", LABELS)
    assert "(token_readonly)" in readonly.value.message
    assert "Read & Write token" in str(readonly.value.hint)
    cloud = cloud_of(fake)
    parts = parts_of(cloud)
    for i in range(1, 11):
        cloud.create_server(
            request_for(
                f"coop-server-{i}", parts.ssh_key_id, placement_group_id=parts.placement_group_id
            )
        )
    with pytest.raises(OperationFailedError) as full:
        cloud.create_server(
            request_for(
                "coop-server-11", parts.ssh_key_id, placement_group_id=parts.placement_group_id
            )
        )
    assert "(placement_error)" in full.value.message
    assert "spread placement group (at most 10 servers" in str(full.value.hint)


# -- point 5: the fake's other rules ------------------------------------------------------


def test_the_rate_limit_bucket_refills_and_the_sdk_waits_for_it(fake: FakeHetzner) -> None:
    fake.rate_limit = 3
    fake._bucket = (3.0, 0.0)
    answer = requests.get(
        f"{fake.endpoint}/locations", headers={"Authorization": f"Bearer {fake.token}"}, timeout=5
    )
    assert answer.headers["RateLimit-Limit"] == "3"
    assert int(answer.headers["RateLimit-Remaining"]) <= 2
    assert int(answer.headers["RateLimit-Reset"]) > 0
    cloud = cloud_of(fake)
    for kind in ("a", "b", "c", "d"):  # more than the bucket holds: 429s, waited out
        cloud.ensure_placement_group(kind, {**LABELS, "libresh.org/part": kind})
    assert len(fake.of_kind("placement_groups")) == 4


def test_labels_names_and_user_data_are_checked_like_the_api_does(fake: FakeHetzner) -> None:
    cloud = cloud_of(fake)
    key = parts_of(cloud).ssh_key_id
    with pytest.raises(BadInputError, match="label value 'two words'"):
        cloud.ensure_placement_group("bad", {"libresh.org/cluster": "two words"})
    with pytest.raises(BadInputError, match=r"label key 'hetzner\.cloud/x'"):
        cloud.ensure_placement_group("bad", {"hetzner.cloud/x": "y"})
    with pytest.raises(BadInputError, match="user_data: is limited to 32KiB"):
        cloud.create_server(request_for("coop-agent-1", key, user_data="#" * (32 * 1024 + 1)))
    with pytest.raises(BadInputError, match="name: must be a valid hostname"):
        cloud.create_server(request_for("coop_agent", key))


def test_dry_runs_of_create_scale_and_destroy_say_what_they_would_do_and_change_nothing(
    fake: FakeHetzner,
) -> None:
    from libresh_cli.cluster.preview import create_actions, destroy_actions, scale_actions

    cloud = cloud_of(fake)
    spec = spec_of(count=1)
    ensure_servers(cloud, spec, parts_of(cloud), CreateReport("coop"), SilentReporter(), agents=1)
    requests_before = len(fake.times)
    before = {kind: len(fake.of_kind(kind)) for kind in ("servers", "networks", "firewalls")}
    created = create_actions(cloud, spec)
    assert "create 1 server(s): coop-agent-2 (cx33)" in created
    assert "keep 2 server(s) that exist: coop-server-1, coop-agent-1" in created
    assert scale_actions(cloud, spec, 0) == ["drain and delete agent coop-agent-1"]
    assert scale_actions(cloud, spec, 3) == [
        "create and join 2 agent(s) (cx33): coop-agent-2, coop-agent-3"
    ]
    assert scale_actions(cloud, spec, 1) == ["change nothing: cluster coop has 1 agent(s)"]
    deleted = destroy_actions(cloud, LABELS)
    assert {"delete server coop-server-1", "delete server coop-agent-1"} <= set(deleted)
    assert {"delete SSH key coop", "delete placement group coop"} <= set(deleted)
    assert {kind: len(fake.of_kind(kind)) for kind in before} == before
    assert {m for m, _, _ in fake.times[requests_before:]} == {"GET"}
