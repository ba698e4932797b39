"""Hetzner Cloud through the official `hcloud` SDK: what `libresh cluster` needs, each
resource found by its labels before anything is created, so a re-run creates nothing twice.

The SDK retries rate limits, conflicts, gateway errors and timed-out requests itself
(exponential backoff; hcloud-python's `Client` docstring, "Retry mechanism"), but not `locked`
("another action is running"): server creation retries that here. What still fails comes out
of here as a LibreshError that says what Hetzner said and what to do. The token is held by the
SDK's session only: it is never part of a message.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests
from hcloud import APIException, Client
from hcloud.actions import ActionFailedException, ActionTimeoutException, BoundAction
from hcloud.firewalls import (
    FirewallResource,
    FirewallResourceLabelSelector,
    FirewallRule,
)
from hcloud.images import Image
from hcloud.load_balancer_types import LoadBalancerType
from hcloud.load_balancers import (
    LoadBalancerHealthCheck,
    LoadBalancerService,
    LoadBalancerTarget,
    LoadBalancerTargetLabelSelector,
)
from hcloud.locations import Location
from hcloud.networks import Network, NetworkSubnet
from hcloud.placement_groups import PlacementGroup
from hcloud.server_types import ServerType
from hcloud.servers import BoundServer
from hcloud.ssh_keys import SSHKey

from libresh_cli import __version__
from libresh_cli.errors import (
    BadInputError,
    ConflictError,
    LibreshError,
    OperationFailedError,
    PrerequisiteError,
    UnreachableError,
)

ENDPOINT_ENV = "LIBRESH_HCLOUD_ENDPOINT"  # another API address: a proxy, or the tests' fake
LOAD_BALANCER_TYPE = "lb11"
API_PORT = 6443
# Server creations started together are spread over this many seconds, and a refused one is
# tried again: hetzner-k3s sleeps rand(3001) ms before each POST /servers and retries with a
# growing delay (src/hetzner/instance/create.cr, create_instance).
CREATION_SPREAD = 3.0
# Refusals that pass: another action holds a resource the server uses (`locked`, which the SDK
# does not retry), a busy or maintained platform. API docs, "Errors".
PASSING = ("locked", "conflict", "service_error", "maintenance", "timeout")
CREATION_ATTEMPTS = 6


@dataclass(frozen=True)
class Rule:
    """An inbound firewall rule."""

    description: str
    protocol: str  # tcp | udp | icmp
    port: str | None  # "22", "2379-2380"; None for icmp
    sources: tuple[str, ...]


@dataclass(frozen=True)
class ServerInfo:
    id: int
    name: str
    labels: dict[str, str]
    status: str
    location: str
    server_type: str
    public_ipv4: str | None
    private_ipv4: str | None

    @property
    def role(self) -> str:
        return self.labels.get("libresh.org/role", "")

    @property
    def index(self) -> int:
        return int(self.labels.get("libresh.org/index", "0") or 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "status": self.status,
            "location": self.location,
            "type": self.server_type,
            "public_ipv4": self.public_ipv4,
            "private_ipv4": self.private_ipv4,
        }


@dataclass(frozen=True)
class LoadBalancerInfo:
    id: int
    name: str
    public_ipv4: str | None
    private_ipv4: str | None
    # target server's id -> health of the API port: healthy | unhealthy | unknown
    health: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Ensured:
    """A resource looked up by its labels, created if it was missing."""

    kind: str
    name: str
    id: int
    created: bool


@dataclass(frozen=True)
class ServerRequest:
    name: str
    server_type: str
    image: str
    location: str
    labels: dict[str, str]
    user_data: str
    ssh_key_id: int
    network_id: int | None
    placement_group_id: int | None


@dataclass(frozen=True)
class ServerTypeOffer:
    """A server type and where it can be created. Since 2025-09 Hetzner offers server types per
    location, each with its own deprecation and availability (`locations[]` on server types;
    docs.hetzner.cloud/changelog#2025-09-24-per-location-server-types, and `available` since
    #2026-04-01-datacenter-deprecations; hcloud-python v2.7.0 and v2.18.0)."""

    architecture: str  # x86 | arm
    # location -> "available" | "deprecated" (no longer created there) | "sold out" (for now)
    locations: dict[str, str]

    def available_in(self, location: str) -> bool:
        return self.locations.get(location) == "available"


@dataclass(frozen=True)
class Catalog:
    """What the project can use: locations (with their network zone), server types."""

    locations: dict[str, str]  # name -> network zone
    server_types: dict[str, ServerTypeOffer]


def selector(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


class HetznerCloud:
    """One project, reached with one token."""

    def __init__(
        self,
        token: str,
        token_source: str,
        endpoint: str | None = None,
        *,
        timeout: tuple[float, float] = (10, 60),
        creation_spread: float = CREATION_SPREAD,
        retry_base: float = 1.0,
    ) -> None:
        self._token_source = token_source
        self._spread = creation_spread
        self._retry_base = retry_base
        self._client = Client(
            token=token,
            api_endpoint=endpoint or os.environ.get(ENDPOINT_ENV) or "https://api.hetzner.cloud/v1",
            application_name="libresh",
            application_version=__version__,
            # Actions are polled at once, then after 0.5, 1, 2, 4, 5, 5 ... seconds.
            poll_interval=lambda retries: min(5.0, 0.25 * 2**retries),
            poll_max_retries=200,
            timeout=timeout,
        )

    # -- reading ---------------------------------------------------------------------------

    def catalog(self) -> Catalog:
        with self._errors("reading the locations and server types"):
            locations = {loc.name: loc.network_zone for loc in self._client.locations.get_all()}
            types = {
                str(t.name): ServerTypeOffer(
                    str(t.architecture),
                    {str(o.location.name): _offer(o) for o in t.locations or []},
                )
                for t in self._client.server_types.get_all()
            }
        return Catalog({k: str(v) for k, v in locations.items() if k}, types)

    def image_exists(self, name: str, architecture: str) -> bool:
        with self._errors(f"looking up the image {name}"):
            found = self._client.images.get_by_name_and_architecture(name, architecture)
        return found is not None

    def servers(self, labels: dict[str, str]) -> list[ServerInfo]:
        with self._errors("listing the servers"):
            found = self._client.servers.get_all(label_selector=selector(labels))
        return sorted((_server_info(s) for s in found), key=lambda s: (s.role, s.index))

    def load_balancer(self, labels: dict[str, str]) -> LoadBalancerInfo | None:
        with self._errors("reading the load balancer"):
            found = self._client.load_balancers.get_all(label_selector=selector(labels))
        if not found:
            return None
        balancer = found[0]
        public = balancer.public_net.ipv4.ip if balancer.public_net else None
        private = balancer.private_net[0].ip if balancer.private_net else None
        health: dict[int, str] = {}
        for target in balancer.targets or []:
            for member in target.targets or [target]:
                if member.server is None:
                    continue
                statuses = [
                    h.status for h in member.health_status or [] if h.listen_port == API_PORT
                ]
                health[_id(member.server)] = str(statuses[0]) if statuses else "unknown"
        return LoadBalancerInfo(_id(balancer), str(balancer.name), public, private, health)

    # -- creating (each finds first, by labels) ---------------------------------------------

    def ensure_ssh_key(self, name: str, public_key: str, labels: dict[str, str]) -> Ensured:
        def create() -> int:
            try:
                return _id(self._client.ssh_keys.create(name, public_key, labels=labels))
            except APIException as error:
                if error.code == "uniqueness_error":
                    raise ConflictError(
                        f"This SSH key is already in the Hetzner project under another name "
                        f"(Hetzner: {error.message}).",
                        hint=f"Delete it there, or add the label {selector(labels)} to it, "
                        "then run again.",
                    ) from error
                raise

        return self._ensure("SSH key", name, self._client.ssh_keys.get_all, labels, create)

    def ensure_network(
        self, name: str, ip_range: str, subnet: str, zone: str, labels: dict[str, str]
    ) -> Ensured:
        def create() -> int:
            subnets = [NetworkSubnet(ip_range=subnet, network_zone=zone, type="cloud")]
            return _id(
                self._client.networks.create(
                    name, ip_range=ip_range, subnets=subnets, labels=labels
                )
            )

        return self._ensure("network", name, self._client.networks.get_all, labels, create)

    def ensure_placement_group(self, name: str, labels: dict[str, str]) -> Ensured:
        def create() -> int:
            created = self._client.placement_groups.create(name, "spread", labels=labels)
            return _id(created.placement_group)

        getter = self._client.placement_groups.get_all
        return self._ensure("placement group", name, getter, labels, create)

    def ensure_firewall(
        self, name: str, rules: list[Rule], labels: dict[str, str], applies_to: dict[str, str]
    ) -> Ensured:
        """The firewall with exactly these rules, applied to the servers carrying
        `applies_to` (servers created later get it by their labels)."""
        wanted = [_firewall_rule(rule) for rule in rules]

        def create() -> int:
            resource = FirewallResource(
                type="label_selector",
                label_selector=FirewallResourceLabelSelector(selector(applies_to)),
            )
            created = self._client.firewalls.create(
                name,
                rules=wanted,
                labels=labels,  # type: ignore[arg-type]  # the SDK's annotation is wrong
                resources=[resource],
            )
            self._wait(created.actions or [], f"applying the firewall {name}")
            return _id(created.firewall)

        ensured = self._ensure("firewall", name, self._client.firewalls.get_all, labels, create)
        if not ensured.created:
            self._keep_rules(ensured, wanted)
        return ensured

    def _keep_rules(self, ensured: Ensured, wanted: list[FirewallRule]) -> None:
        with self._errors(f"reading the firewall {ensured.name}"):
            firewall = self._client.firewalls.get_by_id(ensured.id)
            if _rules_key(firewall.rules or []) != _rules_key(wanted):
                self._wait(firewall.set_rules(wanted), f"updating the firewall {ensured.name}")

    def ensure_load_balancer(
        self,
        name: str,
        location: str,
        network_id: int | None,
        labels: dict[str, str],
        targets: dict[str, str],
    ) -> Ensured:
        """A TCP load balancer for the Kubernetes API (6443), its targets the servers
        carrying `targets`, reached on the private network when there is one."""

        def create() -> int:
            check = LoadBalancerHealthCheck(
                protocol="tcp", port=API_PORT, interval=5, timeout=3, retries=3
            )
            service = LoadBalancerService(
                protocol="tcp", listen_port=API_PORT, destination_port=API_PORT, health_check=check
            )
            target = LoadBalancerTarget(
                type="label_selector",
                label_selector=LoadBalancerTargetLabelSelector(selector(targets)),
                use_private_ip=network_id is not None,
            )
            created = self._client.load_balancers.create(
                name,
                load_balancer_type=LoadBalancerType(name=LOAD_BALANCER_TYPE),
                location=Location(name=location),
                services=[service],
                targets=[target],
                labels=labels,
                network=Network(id=network_id) if network_id is not None else None,
            )
            self._wait([created.action], f"creating the load balancer {name}")
            return _id(created.load_balancer)

        getter = self._client.load_balancers.get_all
        return self._ensure("load balancer", name, getter, labels, create)

    def create_server(self, request: ServerRequest) -> ServerInfo:
        """The server, made and started. Creations started together are spread out, and a
        refusal that passes (PASSING) is tried again. A server whose start failed is returned
        as it is (`off`): the caller powers it on or replaces it. A request the SDK sent again
        after a timeout, answered `uniqueness_error` because the first one did make the
        server, finds that server by its name and labels."""
        time.sleep(random.uniform(0, self._spread))  # noqa: S311 - spreading, not secrecy
        with self._errors(f"creating the server {request.name}"):
            attempt = 0
            while True:
                attempt += 1
                try:
                    created = self._post_server(request)
                    break
                except APIException as error:
                    if error.code == "uniqueness_error":
                        return self._adopt_server(request, error)
                    if error.code not in PASSING or attempt >= CREATION_ATTEMPTS:
                        raise
                    delay = self._retry_base * 2 ** (attempt - 1)
                    time.sleep(random.uniform(delay / 2, delay))  # noqa: S311
            self._wait([created.action], request.name)
            self._wait(created.next_actions or [], request.name, tolerate=("start_server",))
            server = self._client.servers.get_by_id(_id(created.server))
        return _server_info(server)

    def _post_server(self, request: ServerRequest) -> Any:
        return self._client.servers.create(
            request.name,
            server_type=ServerType(name=request.server_type),
            image=Image(name=request.image),
            location=Location(name=request.location),
            ssh_keys=[SSHKey(id=request.ssh_key_id)],
            networks=[Network(id=request.network_id)] if request.network_id else None,
            placement_group=PlacementGroup(id=request.placement_group_id)
            if request.placement_group_id
            else None,
            user_data=request.user_data,
            labels=request.labels,
        )

    def _adopt_server(self, request: ServerRequest, error: APIException) -> ServerInfo:
        found = self._client.servers.get_by_name(request.name)
        if found is None or not _carries(found.labels, request.labels):
            raise ConflictError(
                f"A server named {request.name} already exists in the Hetzner project, without "
                "this cluster's labels; libresh does not take over what it did not create.",
                hint=f"Rename or delete it, or label it {selector(request.labels)} if it is "
                "this cluster's, then run again.",
            ) from error
        # Ours: made by the first request, whose answer was lost. Its actions are waited for.
        running = found.get_actions_list(status=["running"]).actions
        self._wait(running, request.name, tolerate=("start_server",))
        return _server_info(self._client.servers.get_by_id(_id(found)))

    def power_on(self, server_id: int, name: str) -> bool:
        """Start a server that is off; False when Hetzner could not start it."""
        with self._errors(f"starting the server {name}"):
            server = BoundServer(self._client.servers, {"id": server_id}, complete=False)
            action = server.power_on()
            try:
                self._wait([action], f"starting the server {name}")
            except OperationFailedError:
                return False
        return True

    # -- removing ----------------------------------------------------------------------------

    def delete_server(self, server_id: int, name: str) -> None:
        with self._errors(f"deleting the server {name}"):
            action = self._client.servers.delete(
                BoundServer(self._client.servers, {"id": server_id})
            )
            self._wait([action], f"deleting the server {name}")

    def delete_load_balancers(self, labels: dict[str, str]) -> list[str]:
        """The load balancers carrying these labels, deleted: 'load balancer NAME' each."""
        with self._errors("deleting the load balancer"):
            found = self._client.load_balancers.get_all(label_selector=selector(labels))
            for balancer in found:
                balancer.delete()
        return [f"load balancer {b.name}" for b in found]

    def delete_labelled(self, labels: dict[str, str]) -> list[str]:
        """Everything but servers carrying these labels, in an order Hetzner accepts (what
        refers to the network first). Every kind is tried even when one fails; then one error
        names every failure. Returns what was deleted, as 'kind name'."""
        deleted: list[str] = []
        failures: list[str] = []
        wanted = selector(labels)
        for kind, get_all in self._labelled_kinds():
            try:
                with self._errors(f"deleting the {kind}s"):
                    for resource in get_all(label_selector=wanted):
                        if kind == "firewall":
                            self._delete_firewall(resource)
                        else:
                            resource.delete()
                        deleted.append(f"{kind} {resource.name}")
            except LibreshError as error:
                failures.append(error.message)
        if failures:
            lines = "\n".join(f"- {f}" for f in failures)
            raise OperationFailedError(
                f"Deleted {', '.join(deleted) or 'nothing'}; but not everything:\n{lines}",
                hint="Run the same command again: what is already gone is skipped.",
            )
        return deleted

    def labelled(self, labels: dict[str, str]) -> list[str]:
        """What delete_labelled would delete, as 'kind name', changing nothing."""
        found = []
        for kind, get_all in self._labelled_kinds():
            with self._errors(f"listing the {kind}s"):
                found += [f"{kind} {r.name}" for r in get_all(label_selector=selector(labels))]
        return found

    def _labelled_kinds(self) -> list[tuple[str, Callable[..., list[Any]]]]:
        """Every kind but servers, in the order Hetzner accepts their deletion."""
        return [
            ("load balancer", self._client.load_balancers.get_all),
            ("firewall", self._client.firewalls.get_all),
            ("placement group", self._client.placement_groups.get_all),
            ("network", self._client.networks.get_all),
            ("SSH key", self._client.ssh_keys.get_all),
        ]

    def _delete_firewall(self, firewall: Any, attempts: int = 10, pause: float = 2.0) -> None:
        """A firewall still applied, by a label selector too (even one no server matches any
        more), cannot be deleted: the API answers 422 `resource_in_use`
        (vitobotta/hetzner-k3s#625, terraform-provider-hcloud#463/#464). So: remove it from
        its resources, wait for those actions, then delete, trying again a few times while
        Hetzner catches up (as hetzner-k3s does, src/hetzner/firewall/delete.cr)."""
        resources = [
            FirewallResource(type=r.type, server=r.server, label_selector=r.label_selector)
            for r in firewall.applied_to or []
        ]
        if resources:
            self._wait(
                firewall.remove_from_resources(resources),
                f"removing the firewall {firewall.name} from its servers",
            )
        for attempt in range(1, attempts + 1):
            try:
                firewall.delete()
                return
            except APIException as error:
                if error.code not in ("resource_in_use", "locked") or attempt == attempts:
                    raise
                time.sleep(pause)

    # -- helpers -----------------------------------------------------------------------------

    def _ensure(
        self,
        kind: str,
        name: str,
        get_all: Callable[..., list[Any]],
        labels: dict[str, str],
        create: Callable[[], int],
    ) -> Ensured:
        with self._errors(f"looking up the {kind} {name}"):
            found = get_all(label_selector=selector(labels))
        if found:
            return Ensured(kind, found[0].name, found[0].id, created=False)
        with self._errors(f"creating the {kind} {name}"):
            try:
                return Ensured(kind, name, create(), created=True)
            except APIException as error:
                if error.code == "uniqueness_error":
                    # The SDK sends a timed-out request again; if the first one made it, the
                    # second meets it: ours when it carries our labels.
                    again = [r for r in get_all(name=name) if _carries(r.labels, labels)]
                    if again:
                        return Ensured(kind, name, _id(again[0]), created=True)
                    raise ConflictError(
                        f"A {kind} named {name} already exists in the Hetzner project, without "
                        "this cluster's labels; libresh does not take over what it did not "
                        "create.",
                        hint=f"Rename or delete it, or label it {selector(labels)} if it is "
                        "this cluster's, then run again.",
                    ) from error
                raise

    def _wait(self, actions: list[BoundAction], what: str, tolerate: tuple[str, ...] = ()) -> None:
        """Wait for each action; one whose command is in `tolerate` may fail (the caller looks
        at what it left)."""
        for action in actions:
            try:
                action.wait_until_finished()
            except ActionFailedException as error:
                failed = error.action
                if failed.command in tolerate:
                    continue
                detail: Any = failed.error or {}
                raise OperationFailedError(
                    f"Hetzner could not finish {failed.command} for {what}: "
                    f"{detail.get('message', 'no message')} ({detail.get('code', 'error')}).",
                    hint="Run the same command again: what exists is kept, what failed is "
                    "made again.",
                ) from error
            except ActionTimeoutException as error:
                raise OperationFailedError(
                    f"Hetzner's {error.action.command} for {what} did not finish in time.",
                    hint="Check the project's status in the Hetzner console, then run again.",
                ) from error

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except LibreshError:
            raise
        except APIException as error:
            raise self._translate(error, doing) from None
        except requests.RequestException as error:
            raise UnreachableError(
                f"The Hetzner Cloud API did not answer while {doing}: {type(error).__name__}.",
                hint="Check this machine's internet connection (https://status.hetzner.com), "
                "then run again.",
            ) from None

    def _translate(self, error: APIException, doing: str) -> LibreshError:
        code, message = str(error.code), str(error.message)
        said = f"Hetzner refused {doing}: {message} ({code})."
        if code == "unauthorized":
            return BadInputError(
                f"Hetzner refused the API token read from {self._token_source} ({message}).",
                hint="Create a Read & Write token in the Hetzner console (project > Security > "
                "API tokens) and use that one.",
            )
        if code in ("forbidden", "token_readonly"):
            return BadInputError(
                f"Hetzner refused {doing} with the token read from {self._token_source}: "
                f"{message} ({code}).",
                hint="This token is Read only: create a Read & Write token in the Hetzner "
                "console (project > Security > API tokens) and use that one.",
            )
        if code == "resource_limit_exceeded":
            return PrerequisiteError(
                said,
                hint="The project's limits (quota) are reached: ask Hetzner for a higher limit "
                "(console > Limits), or use fewer or smaller servers. What exists is kept; "
                "run again afterwards.",
            )
        if code == "rate_limit_exceeded":
            return UnreachableError(
                said, hint="The project's request budget is spent for now: run again in a while."
            )
        if code == "placement_error":
            return OperationFailedError(
                said,
                hint="Hetzner found no host for this server apart from the other servers of "
                "the cluster's spread placement group (at most 10 servers, each on its own "
                "host). Run again later, or put the servers in another location.",
            )
        if code == "resource_unavailable":
            return OperationFailedError(
                said,
                hint="This server type cannot be had in this location for now (sold out, or "
                "the location takes no new servers: https://status.hetzner.com). Run again "
                "later, or choose another type or location in the cluster file.",
            )
        if code == "locked":
            return OperationFailedError(
                said,
                hint="Another action was still running on this resource. Run the same command "
                "again in a minute.",
            )
        if code in ("invalid_input", "not_found"):
            details = error.details or {}
            fields = ", ".join(
                f"{f.get('name')}: {'; '.join(f.get('messages', []))}"
                for f in details.get("fields", [])
            )
            return BadInputError(said + (f" {fields}" if fields else ""))
        if code == "uniqueness_error":
            return ConflictError(said)
        return OperationFailedError(said, hint="Run the same command again to pick up from here.")


def _id(resource: Any) -> int:
    """A resource's id: always there on what the API returned (the SDK types it Optional)."""
    return int(resource.id)


def _offer(place: Any) -> str:
    """A server type in one location (hcloud's ServerTypeLocation)."""
    if place.deprecation is not None:
        return "deprecated"
    if place.available is False:
        return "sold out"
    return "available"


def _carries(found: dict[str, str] | None, labels: dict[str, str]) -> bool:
    return all((found or {}).get(k) == v for k, v in labels.items())


def _server_info(server: BoundServer) -> ServerInfo:
    public = server.public_net.ipv4.ip if server.public_net and server.public_net.ipv4 else None
    private = server.private_net[0].ip if server.private_net else None
    return ServerInfo(
        id=_id(server),
        name=str(server.name),
        labels=dict(server.labels or {}),
        status=str(server.status),
        location=str(server.location.name) if server.location else "",
        server_type=str(server.server_type.name) if server.server_type else "",
        public_ipv4=public,
        private_ipv4=private,
    )


def _firewall_rule(rule: Rule) -> FirewallRule:
    return FirewallRule(
        direction="in",
        protocol=rule.protocol,
        source_ips=list(rule.sources),
        port=rule.port,
        description=rule.description,
    )


def _rules_key(rules: list[FirewallRule]) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return sorted(
        (str(r.direction), str(r.protocol), str(r.port or ""), tuple(sorted(r.source_ips or [])))
        for r in rules
    )
