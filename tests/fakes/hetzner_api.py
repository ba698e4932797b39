"""FAKE Hetzner Cloud API, for tests and benchmarks only: the real one cannot be reached here.

Written from the public API documentation (https://docs.hetzner.cloud), for the endpoints
libresh calls through the official `hcloud` SDK, which the tests drive against it. It keeps
state like the real API does:
- resources (SSH keys, networks, firewalls, placement groups, load balancers, servers) with
  ids, names unique per kind (`uniqueness_error`), labels and `label_selector` filtering;
- list endpoints paginated (`page`, `per_page`, `meta.pagination`), with a page size the test
  can make small to prove that every page is read;
- actions that start `running` and reach `success` (or `error`, when a test asks for a fault)
  after being polled;
- errors in the API's shape: `unauthorized` (wrong token), `rate_limit_exceeded` (429, on
  request of the test), `conflict` (409), `resource_limit_exceeded` (a server quota),
  `invalid_input`, `not_found`.

Rules of the real API it follows, each with its source (API reference:
https://docs.hetzner.cloud/reference/cloud; "API docs" below):
- rate limit: a bucket of `rate_limit` requests (3600 by default) refilled at one request per
  second; every answer carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`
  (API docs, "Rate Limiting"); an empty bucket answers 429 `rate_limit_exceeded`;
- `locked` (423): an action asked on a resource while another of its actions runs (API docs,
  "Errors": "The item you are trying to access is locked (there is already an action
  running)"); tests can also inject it;
- server types are offered per location, each location with its own deprecation and
  availability (`locations[]` on server types; API changelog 2025-09-24 "per-location server
  types" and 2026-04-01 "datacenter deprecations", hcloud-python v2.7.0 / v2.18.0). The
  catalogue is today's: CX Gen 2 (cx22, cx32, ...) and CPX Gen 1 in the EU were deprecated in
  October 2025 and removed at the end of 2025 (changelog 2025-10-16 "server types
  deprecated"; hetznercloud/packer-plugin-hcloud#317, terraform-provider-hcloud#1233,
  kube-hetzner#1991), so they are not listed; CX and CAX are offered in the EU locations only
  (trailofbits/algo#14562, roots/trellis-cli#622). A type not offered where it is asked is
  refused with 400 `invalid_input` "unsupported location for server type"
  (autobase-tech/autobase#1403, roots/trellis-cli#622); a type sold out there with 412
  `resource_unavailable` (kube-hetzner#1613, #1991);
- labels: keys an optional DNS-subdomain prefix and a name of at most 63 characters, values at
  most 63, both starting and ending alphanumeric with `-_.` inside (API docs, "Labels");
  server names must be valid hostnames (RFC 1123; API docs, "Create a Server");
- user data: at most 32 KiB (API docs, "Create a Server": "limited to 32KiB");
- a spread placement group holds at most 10 servers (docs.hetzner.com/cloud/placement-groups
  FAQ); the 11th is refused (modelled as 412 `placement_error`, the API's code for a failed
  placement);
- a firewall still applied (to servers or through a label selector, even one matching no
  server any more) cannot be deleted: 422 `resource_in_use` (vitobotta/hetzner-k3s#625 and its
  src/hetzner/firewall/delete.cr, terraform-provider-hcloud#463/#464);
- deleting a network detaches the servers and load balancers attached to it (API docs,
  "Delete a Network": attached servers are detached in the background);
- a server whose start fails is left `off`; `poweron` starts it (API docs, "Power on a
  Server").

What the real API does with machines, the fake does with the tests' own: a created server gets
the next free address of `server_pool` (a test host's public and private address), and the
`on_server_created` hook sees it with its user data. A load balancer's health checks are real
TCP connections to its targets, and its public address forwards TCP to a healthy target.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

LOCATIONS = [
    ("fsn1", "Falkenstein DC Park 1", "DE", "Falkenstein", "eu-central"),
    ("nbg1", "Nuremberg DC Park 1", "DE", "Nuremberg", "eu-central"),
    ("hel1", "Helsinki DC Park 1", "FI", "Helsinki", "eu-central"),
    ("ash", "Ashburn, VA", "US", "Ashburn, VA", "us-east"),
    ("hil", "Hillsboro, OR", "US", "Hillsboro, OR", "us-west"),
    ("sin", "Singapore", "SG", "Singapore", "ap-southeast"),
]
EU = ("fsn1", "nbg1", "hel1")
US_SG = ("ash", "hil", "sin")
GONE = {"announced": "2025-10-16T00:00:00+00:00", "unavailable_after": "2025-12-31T00:00:00+00:00"}
# name, cores, memory, disk, architecture, {location: deprecation or None} (see the docstring)
SERVER_TYPES: list[tuple[str, int, float, int, str, dict[str, dict[str, str] | None]]] = [
    ("cx23", 2, 4.0, 40, "x86", dict.fromkeys(EU)),
    ("cx33", 4, 8.0, 80, "x86", dict.fromkeys(EU)),
    ("cx43", 8, 16.0, 160, "x86", dict.fromkeys(EU)),
    ("cpx22", 2, 4.0, 80, "x86", dict.fromkeys(EU)),
    ("cpx32", 4, 8.0, 160, "x86", dict.fromkeys(EU)),
    # CPX Gen 1: gone from the EU locations, still offered in the US and Singapore.
    ("cpx21", 3, 4.0, 80, "x86", {**dict.fromkeys(EU, GONE), **dict.fromkeys(US_SG)}),
    ("cax11", 2, 4.0, 40, "arm", dict.fromkeys(EU)),
    ("cax21", 4, 8.0, 80, "arm", dict.fromkeys(EU)),
]
SPREAD_LIMIT = 10
USER_DATA_LIMIT = 32 * 1024
HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")  # fmt: skip
LABEL_PART = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")
IMAGES = ["debian-12", "debian-13", "ubuntu-24.04", "ubuntu-22.04"]
NOW = "2026-11-22T10:00:00+00:00"


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


@dataclass
class Faults:
    """What the test wants to go wrong."""

    fail_actions: dict[str, int] = field(default_factory=dict)  # command -> times to fail
    rate_limited: int = 0  # the next N requests get 429
    rate_limit_after: int | None = None  # ... starting after this many more requests
    conflicts: dict[str, int] = field(default_factory=dict)  # "METHOD /path-prefix" -> times
    locked: dict[str, int] = field(default_factory=dict)  # "METHOD /path-prefix" -> times
    # "METHOD /path-prefix" -> times: the request is carried out, its answer comes this late
    late_answers: dict[str, int] = field(default_factory=dict)
    late_seconds: float = 3.0
    sold_out: set[tuple[str, str]] = field(default_factory=set)  # (server type, location)
    server_quota: int | None = None


@dataclass
class PoolAddress:
    public_ipv4: str
    private_ipv4: str | None = None


class FakeHetzner:
    """The fake API's state and its HTTP server (127.0.0.1, a free port)."""

    def __init__(
        self,
        token: str,
        server_pool: list[PoolAddress],
        *,
        load_balancer_addresses: list[str] | None = None,
        max_per_page: int = 50,
        polls_to_finish: int = 2,
        on_server_created: Callable[[dict[str, Any], str], None] | None = None,
        rate_limit: int = 3600,
        read_only_token: str | None = None,
    ) -> None:
        self.token = token
        self.read_only_token = read_only_token
        self.pool = server_pool
        self.lb_addresses = load_balancer_addresses or ["127.0.0.77"]
        self.max_per_page = max_per_page
        self.polls_to_finish = polls_to_finish
        self.on_server_created = on_server_created
        self.faults = Faults()
        self.rate_limit = rate_limit
        self._bucket = (float(rate_limit), time.monotonic())  # requests left, when counted
        self.lock = threading.RLock()
        self.ids = itertools.count(1000)
        self.resources: dict[str, dict[int, dict[str, Any]]] = {
            kind: {}
            for kind in (
                "ssh_keys", "networks", "firewalls", "placement_groups", "load_balancers",
                "servers",
            )
        }  # fmt: skip
        self.actions: dict[int, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) in order
        self.times: list[tuple[str, str, float]] = []  # (method, path, monotonic time)
        self.user_data: dict[str, str] = {}  # server name -> user data
        self.proxies: dict[int, _TcpProxy] = {}
        self._server: ThreadingHTTPServer | None = None

    # -- test side ---------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeHetzner:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def do_PUT(self) -> None:
                fake._handle(self, "PUT")

            def do_DELETE(self) -> None:
                fake._handle(self, "DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.resources[kind].values())

    def count(self, method: str, pattern: str) -> int:
        return sum(1 for m, p in self.requests if m == method and re.fullmatch(pattern, p))

    # -- HTTP --------------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(request.path)
        path = url.path.removeprefix("/v1")
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(request.headers.get("Content-Length") or 0)
        body = json.loads(request.rfile.read(length) or b"{}") if length else {}
        try:
            status, payload = self._route(request, method, path, query, body)
        except ApiError as error:
            status = error.status
            payload = {
                "error": {"code": error.code, "message": error.message, "details": error.details}
            }
        if self._take_fault(self.faults.late_answers, method, path):
            time.sleep(self.faults.late_seconds)  # done, but the client has stopped waiting
        data = json.dumps(payload).encode() if payload is not None else b""
        with contextlib.suppress(OSError):  # a client that stopped waiting has gone
            request.send_response(status)
            for header, value in self._rate_headers().items():
                request.send_header(header, value)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data)

    def _route(
        self,
        request: BaseHTTPRequestHandler,
        method: str,
        path: str,
        query: dict[str, str],
        body: dict[str, Any],
    ) -> tuple[int, dict[str, Any] | None]:
        authorization = request.headers.get("Authorization")
        if authorization == f"Bearer {self.read_only_token}" and self.read_only_token:
            if method != "GET":  # API docs, "Errors": token_readonly, GET requests only
                raise ApiError(403, "token_readonly", "The token is only allowed to perform GET")
        elif authorization != f"Bearer {self.token}":
            raise ApiError(401, "unauthorized", "unable to authenticate")
        with self.lock:
            self.requests.append((method, path))
            self.times.append((method, path, time.monotonic()))
            self._spend_rate_limit()
            self._injected_faults(method, path)
            return self._dispatch(method, path, query, body)

    def _spend_rate_limit(self) -> None:
        """One request from the bucket, which refills at one request a second up to its size
        (API docs, "Rate Limiting")."""
        left, since = self._bucket
        now = time.monotonic()
        left = min(float(self.rate_limit), left + (now - since))
        if left < 1:
            self._bucket = (left, now)
            raise ApiError(429, "rate_limit_exceeded", "limit of requests per hour reached")
        self._bucket = (left - 1, now)

    def _rate_headers(self) -> dict[str, str]:
        with self.lock:
            left, since = self._bucket
            left = min(float(self.rate_limit), left + (time.monotonic() - since))
        full_in = self.rate_limit - left
        return {
            "RateLimit-Limit": str(self.rate_limit),
            "RateLimit-Remaining": str(int(left)),
            "RateLimit-Reset": str(int(time.time() + full_in)),  # when the bucket is full
        }

    def _take_fault(self, faults: dict[str, int], method: str, path: str) -> bool:
        with self.lock:
            for key, times in list(faults.items()):
                wanted_method, prefix = key.split(" ", 1)
                if times and method == wanted_method and path.startswith(prefix):
                    faults[key] = times - 1
                    return True
        return False

    def _injected_faults(self, method: str, path: str) -> None:
        faults = self.faults
        if faults.rate_limit_after is not None:
            if faults.rate_limit_after > 0:
                faults.rate_limit_after -= 1
            else:
                faults.rate_limit_after = None
        if faults.rate_limited and faults.rate_limit_after is None:
            faults.rate_limited -= 1
            raise ApiError(429, "rate_limit_exceeded", "limit of 3600 requests per hour reached")
        if self._take_fault(faults.conflicts, method, path):
            raise ApiError(409, "conflict", "resource is locked by a running action")
        if self._take_fault(faults.locked, method, path):
            raise ApiError(423, "locked", "another action is running")

    def _dispatch(
        self, method: str, path: str, query: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, dict[str, Any] | None]:
        parts = path.strip("/").split("/")
        if parts[-2:-1] == ["actions"] and parts[-1].isdigit() and method == "GET":
            return 200, {"action": self._poll_action(int(parts[-1]))}
        kind = parts[0]
        if kind == "locations":
            return 200, self._page("locations", _locations(), query)
        if kind == "server_types":
            return 200, self._page("server_types", _server_types(self.faults.sold_out), query)
        if kind == "images":
            return 200, self._page("images", _images(query), query)
        if kind not in self.resources:
            raise ApiError(404, "not_found", f"no endpoint {path}")
        if len(parts) == 1 and method == "GET":
            return 200, self._page(kind, self._listed(kind, query), query)
        if len(parts) == 1 and method == "POST":
            return 201, self._create(kind, body)
        resource = self._get(kind, int(parts[1]))
        if len(parts) == 2 and method == "GET":
            return 200, {kind[:-1]: self._shown(kind, resource)}
        if len(parts) == 2 and method == "DELETE":
            return self._delete(kind, resource)
        if parts[2:] == ["actions"] and method == "GET":
            wanted = {"id": resource["id"], "type": kind[:-1]}
            found = [_public(a) for a in self.actions.values() if wanted in a["resources"]]
            if "status" in query:
                found = [a for a in found if a["status"] == query["status"]]
            return 200, self._page("actions", found, query)
        if parts[2:3] == ["actions"] and method == "POST":
            self._refuse_if_locked(kind, resource)
        if parts[2:] == ["actions", "set_rules"] and kind == "firewalls":
            resource["rules"] = _rules(body.get("rules", []))
            return 201, {"actions": [self._action("set_firewall_rules", resource, kind)]}
        if parts[2:] == ["actions", "remove_from_resources"] and kind == "firewalls":
            return 201, {"actions": self._remove_firewall_from(resource, body)}
        if parts[2:] == ["actions", "poweron"] and kind == "servers":
            return 201, {"action": self._action("start_server", resource, kind)}
        raise ApiError(404, "not_found", f"no endpoint {method} {path}")

    def _refuse_if_locked(self, kind: str, resource: dict[str, Any]) -> None:
        """423 `locked` while another action of the resource runs (API docs, "Errors")."""
        for action in self.actions.values():
            mine = {"id": resource["id"], "type": kind[:-1]} in action["resources"]
            if mine and action["status"] == "running":
                raise ApiError(423, "locked", f"{kind[:-1]} is locked by {action['command']}")

    def _remove_firewall_from(
        self, firewall: dict[str, Any], body: dict[str, Any]
    ) -> list[dict[str, Any]]:
        actions = []
        for item in body.get("remove_from", []):
            if item not in firewall["applied_to"]:
                raise ApiError(422, "firewall_already_removed", "firewall is not applied there")
            firewall["applied_to"].remove(item)
            actions.append(self._action("remove_firewall", firewall, "firewalls"))
        return actions

    # -- lists -----------------------------------------------------------------------------

    def _page(self, key: str, items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
        per_page = min(int(query.get("per_page", 25)), self.max_per_page)
        page = int(query.get("page", 1))
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        return {
            key: chunk,
            "meta": {
                "pagination": {
                    "page": page,
                    "per_page": per_page,
                    "previous_page": page - 1 if page > 1 else None,
                    "next_page": page + 1 if page < last else None,
                    "last_page": last,
                    "total_entries": len(items),
                }
            },
        }

    def _listed(self, kind: str, query: dict[str, str]) -> list[dict[str, Any]]:
        items = sorted(self.resources[kind].values(), key=lambda r: r["id"])
        if "name" in query:
            items = [r for r in items if r["name"] == query["name"]]
        if "label_selector" in query:
            items = [r for r in items if _matches(r.get("labels", {}), query["label_selector"])]
        return [self._shown(kind, r) for r in items]

    def _get(self, kind: str, resource_id: int) -> dict[str, Any]:
        found = self.resources[kind].get(resource_id)
        if found is None:
            raise ApiError(404, "not_found", f"{kind[:-1]} with ID '{resource_id}' not found")
        return found

    # -- creating --------------------------------------------------------------------------

    def _create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not name:
            missing = {
                "fields": [{"name": "name", "messages": ["Missing data for required field."]}]
            }
            raise ApiError(400, "invalid_input", "invalid input in field 'name'", missing)
        _check_labels(body.get("labels") or {})
        if any(r["name"] == name for r in self.resources[kind].values()):
            raise ApiError(409, "uniqueness_error", f"{kind[:-1]} name is already used",
                           {"fields": [{"name": "name"}]})  # fmt: skip
        resource = {"id": next(self.ids), "name": name, "labels": body.get("labels") or {},
                    "created": NOW}  # fmt: skip
        created: dict[str, Any] = getattr(self, f"_create_{kind}")(resource, body)
        return created

    def _create_ssh_keys(self, resource: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        key = body["public_key"].strip()
        if any(k["public_key"] == key for k in self.resources["ssh_keys"].values()):
            raise ApiError(
                409, "uniqueness_error", "SSH key with the same fingerprint already exists"
            )
        resource.update(public_key=key, fingerprint=_fingerprint(key))
        self.resources["ssh_keys"][resource["id"]] = resource
        return {"ssh_key": resource}

    def _create_networks(self, resource: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        subnets = []
        for subnet in body.get("subnets", []):
            gateway = subnet["ip_range"].rsplit(".", 1)[0] + ".1"
            subnets.append({**subnet, "gateway": gateway, "vswitch_id": None})
        resource.update(ip_range=body["ip_range"], subnets=subnets, routes=[], servers=[],
                        load_balancers=[], protection={"delete": False},
                        expose_routes_to_vswitch=False)  # fmt: skip
        self.resources["networks"][resource["id"]] = resource
        return {"network": resource}

    def _create_placement_groups(
        self, resource: dict[str, Any], body: dict[str, Any]
    ) -> dict[str, Any]:
        resource.update(type=body.get("type", "spread"), servers=[])
        self.resources["placement_groups"][resource["id"]] = resource
        return {"placement_group": resource, "action": None}

    def _create_firewalls(self, resource: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        resource.update(rules=_rules(body.get("rules", [])), applied_to=body.get("apply_to", []))
        self.resources["firewalls"][resource["id"]] = resource
        actions = (
            [self._action("apply_firewall", resource, "firewalls")]
            if resource["applied_to"]
            else []
        )
        return {"firewall": self._shown("firewalls", resource), "actions": actions}

    def _create_load_balancers(
        self, resource: dict[str, Any], body: dict[str, Any]
    ) -> dict[str, Any]:
        location = _location(body.get("location", "fsn1"))
        used = {lb["public_net"]["ipv4"]["ip"] for lb in self.resources["load_balancers"].values()}
        free = [a for a in self.lb_addresses if a not in used]
        if not free:
            raise ApiError(412, "resource_unavailable", "no load balancer address left (fake)")
        private = []
        if body.get("network"):
            network = self._get("networks", int(body["network"]))
            private = [{"network": network["id"], "ip": _network_address(network, 254)}]
        resource.update(
            location=location,
            load_balancer_type={"id": 1, "name": body["load_balancer_type"]},
            algorithm=body.get("algorithm") or {"type": "round_robin"},
            services=[_service(s) for s in body.get("services", [])],
            target_specs=body.get("targets", []),
            public_net={"enabled": True, "ipv4": {"ip": free[0], "dns_ptr": None},
                        "ipv6": {"ip": "2001:db8::1", "dns_ptr": None}},
            private_net=private,
            protection={"delete": False},
            outgoing_traffic=0, ingoing_traffic=0, included_traffic=0,
        )  # fmt: skip
        self.resources["load_balancers"][resource["id"]] = resource
        self.proxies[resource["id"]] = _TcpProxy(free[0], self, resource["id"]).start()
        action = self._action("create_load_balancer", resource, "load_balancers")
        return {"load_balancer": self._shown("load_balancers", resource), "action": action}

    def _create_servers(self, resource: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        self._check_server_request(body)
        used = {s["public_net"]["ipv4"]["ip"] for s in self.resources["servers"].values()}
        free = [a for a in self.pool if a.public_ipv4 not in used]
        if not free:
            raise ApiError(412, "resource_unavailable", "no test host left in the fake's pool")
        address = free[0]
        networks = [self._get("networks", int(n)) for n in body.get("networks") or []]
        resource.update(
            status="initializing",
            server_type=_server_type(body["server_type"]),
            location=_location(body["location"]),
            image={"name": body["image"], "type": "system"},
            public_net={"ipv4": {"id": next(self.ids), "ip": address.public_ipv4,
                                 "blocked": False, "dns_ptr": ""},
                        "ipv6": None, "floating_ips": [], "firewalls": []},
            private_net=[{"network": n["id"], "ip": address.private_ipv4 or
                          _network_address(n, 2 + len(self.resources["servers"])),
                          "alias_ips": [], "mac_address": "86:00:00:00:00:01"} for n in networks],
            placement_group=self._placement(body.get("placement_group"), resource["id"]),
            protection={"delete": False, "rebuild": False}, volumes=[], rescue_enabled=False,
            locked=False, backup_window=None, outgoing_traffic=0, ingoing_traffic=0,
            included_traffic=0, primary_disk_size=40, iso=None,
        )  # fmt: skip
        self.resources["servers"][resource["id"]] = resource
        self.user_data[resource["name"]] = body.get("user_data") or ""
        action = self._action("create_server", resource, "servers")
        start = self._action("start_server", resource, "servers")
        return {"server": self._shown("servers", resource), "action": action,
                "next_actions": [start], "root_password": None}  # fmt: skip

    def _placement(self, group_id: int | None, server_id: int) -> dict[str, Any] | None:
        if group_id is None:
            return None
        group = self._get("placement_groups", int(group_id))
        if group["type"] == "spread" and len(group["servers"]) >= SPREAD_LIMIT:
            full = f"spread placement group holds at most {SPREAD_LIMIT} servers"
            raise ApiError(412, "placement_error", full)
        group["servers"].append(server_id)
        return {k: v for k, v in group.items()}

    def _check_server_request(self, body: dict[str, Any]) -> None:
        quota = self.faults.server_quota
        if quota is not None and len(self.resources["servers"]) >= quota:
            raise ApiError(403, "resource_limit_exceeded", f"server limit of {quota} exceeded")
        fields = []
        offered = {t[0]: t[5] for t in SERVER_TYPES}
        server_type, location = body.get("server_type"), body.get("location")
        if server_type not in offered:
            fields.append({"name": "server_type", "messages": ["server type not found"]})
        if body.get("image") not in IMAGES:
            fields.append({"name": "image", "messages": ["image not found"]})
        if location not in {loc[0] for loc in LOCATIONS}:
            fields.append({"name": "location", "messages": ["location not found"]})
        if not HOSTNAME.fullmatch(str(body.get("name"))):
            fields.append({"name": "name", "messages": ["must be a valid hostname (RFC 1123)"]})
        if len((body.get("user_data") or "").encode()) > USER_DATA_LIMIT:
            fields.append({"name": "user_data", "messages": ["is limited to 32KiB"]})
        if fields:
            raise ApiError(400, "invalid_input", "invalid input", {"fields": fields})
        places = offered[str(server_type)]
        if location not in places or places[str(location)] is not None:
            raise ApiError(400, "invalid_input", "unsupported location for server type")
        if (server_type, location) in self.faults.sold_out:
            raise ApiError(412, "resource_unavailable", "server location disabled")

    # -- deleting --------------------------------------------------------------------------

    def _delete(self, kind: str, resource: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        if kind == "servers":
            del self.resources[kind][resource["id"]]
            for group in self.resources["placement_groups"].values():
                group["servers"] = [i for i in group["servers"] if i != resource["id"]]
            return 200, {"action": self._action("delete_server", resource, kind)}
        if kind == "networks":  # attached servers and load balancers are detached
            for owner in (*self.resources["servers"].values(),
                          *self.resources["load_balancers"].values()):  # fmt: skip
                owner["private_net"] = [
                    n for n in owner["private_net"] if n["network"] != resource["id"]
                ]
        if kind == "firewalls" and resource["applied_to"]:
            raise ApiError(422, "resource_in_use",
                           f"firewall with ID '{resource['id']}' is still in use")  # fmt: skip
        if kind == "placement_groups" and resource["servers"]:
            raise ApiError(409, "resource_in_use", "placement group still has servers")
        del self.resources[kind][resource["id"]]
        if kind == "load_balancers":
            self.proxies.pop(resource["id"]).stop()
            return 200, {"action": self._action("delete_load_balancer", resource, kind)}
        return 204, None

    # -- actions ---------------------------------------------------------------------------

    def _action(self, command: str, resource: dict[str, Any], kind: str) -> dict[str, Any]:
        failing = self.faults.fail_actions.get(command, 0) > 0
        if failing:
            self.faults.fail_actions[command] -= 1
        action: dict[str, Any] = {
            "id": next(self.ids), "command": command, "status": "running", "progress": 0,
            "started": NOW, "finished": None, "error": None,
            "resources": [{"id": resource["id"], "type": kind[:-1]}],
            "_polls": 0, "_fails": failing, "_kind": kind,
        }  # fmt: skip
        self.actions[action["id"]] = action
        return _public(action)

    def _poll_action(self, action_id: int) -> dict[str, Any]:
        action = self.actions.get(action_id)
        if action is None:
            raise ApiError(404, "not_found", f"action with ID '{action_id}' not found")
        if action["status"] == "running":
            action["_polls"] += 1
            action["progress"] = min(100, 100 * action["_polls"] // self.polls_to_finish)
            if action["_polls"] >= self.polls_to_finish:
                self._finish(action)
        return _public(action)

    def _finish(self, action: dict[str, Any]) -> None:
        action["finished"] = NOW
        resource_id = action["resources"][0]["id"]
        if action["_fails"]:
            action["status"] = "error"
            action["error"] = {"code": "action_failed", "message": "Action failed (injected)"}
            if action["command"] == "create_server":
                # A server whose creation failed is gone, as on the real platform.
                self.resources["servers"].pop(resource_id, None)
            if action["command"] == "start_server" and resource_id in self.resources["servers"]:
                self.resources["servers"][resource_id]["status"] = "off"
            return
        action["status"] = "success"
        server = self.resources["servers"].get(resource_id)
        if action["command"] == "start_server" and server is not None:
            server["status"] = "running"
            if self.on_server_created is not None:
                self.on_server_created(server, self.user_data.get(server["name"], ""))

    # -- shown -----------------------------------------------------------------------------

    def _shown(self, kind: str, resource: dict[str, Any]) -> dict[str, Any]:
        if kind == "firewalls":
            return {**resource, "applied_to": self._firewall_applied(resource)}
        if kind == "load_balancers":
            shown = {k: v for k, v in resource.items() if k != "target_specs"}
            shown["targets"] = [
                self._lb_target(resource, spec) for spec in resource["target_specs"]
            ]
            return shown
        return dict(resource)

    def _firewall_applied(self, firewall: dict[str, Any]) -> list[dict[str, Any]]:
        applied = []
        for spec in firewall["applied_to"]:
            entry = dict(spec)
            if spec.get("type") == "label_selector":
                entry["applied_to_resources"] = [
                    {"type": "server", "server": {"id": s["id"]}}
                    for s in self.resources["servers"].values()
                    if _matches(s["labels"], spec["label_selector"]["selector"])
                ]
            applied.append(entry)
        return applied

    def _lb_target(self, balancer: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        members = []
        for server in self.targets_of(balancer, spec):
            health = [
                {"listen_port": s["listen_port"],
                 "status": "healthy" if _reachable(self._target_ip(server, spec),
                                                   s["destination_port"]) else "unhealthy"}
                for s in balancer["services"]
            ]  # fmt: skip
            members.append({"type": "server", "server": {"id": server["id"]},
                            "use_private_ip": spec.get("use_private_ip", False),
                            "health_status": health})  # fmt: skip
        return {**spec, "targets": members}

    def targets_of(self, balancer: dict[str, Any], spec: dict[str, Any]) -> list[dict[str, Any]]:
        selector = spec.get("label_selector", {}).get("selector", "")
        return [s for s in self.resources["servers"].values() if _matches(s["labels"], selector)]

    def _target_ip(self, server: dict[str, Any], spec: dict[str, Any]) -> str:
        if spec.get("use_private_ip") and server["private_net"]:
            return str(server["private_net"][0]["ip"])
        return str(server["public_net"]["ipv4"]["ip"])

    def healthy_backends(self, balancer_id: int, port: int) -> list[tuple[str, int]]:
        with self.lock:
            balancer = self.resources["load_balancers"].get(balancer_id)
            if balancer is None:
                return []
            services = [s for s in balancer["services"] if s["listen_port"] == port]
            found = []
            for spec in balancer["target_specs"]:
                for server in self.targets_of(balancer, spec):
                    for service in services:
                        found.append((self._target_ip(server, spec), service["destination_port"]))
        return [b for b in found if _reachable(*b)]


class _TcpProxy:
    """The fake load balancer's data path: TCP on its public address, port 6443, to the first
    healthy target."""

    def __init__(self, address: str, fake: FakeHetzner, balancer_id: int, port: int = 6443):
        self.address, self.fake, self.balancer_id, self.port = address, fake, balancer_id, port
        self.listener = socket.create_server((address, port), reuse_port=False)
        self.listener.settimeout(0.2)
        self.stopped = threading.Event()

    def start(self) -> _TcpProxy:
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        backends = self.fake.healthy_backends(self.balancer_id, self.port)
        if not backends:
            client.close()
            return
        try:
            upstream = socket.create_connection(backends[0], timeout=5)
        except OSError:
            client.close()
            return
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def _reachable(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=0.3).close()
    except OSError:
        return False
    return True


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _check_labels(labels: dict[str, Any]) -> None:
    """Label keys and values as the API accepts them (API docs, "Labels")."""
    bad = []
    for key, value in labels.items():
        prefix, _, name = str(key).rpartition("/")
        prefix_ok = not prefix or (
            len(prefix) <= 253 and all(HOSTNAME.fullmatch(p) for p in prefix.split("."))
        )
        if not (prefix_ok and LABEL_PART.fullmatch(name) and not prefix.endswith("hetzner.cloud")):
            bad.append(f"label key {key!r} is invalid")
        if not isinstance(value, str) or (value and not LABEL_PART.fullmatch(value)):
            bad.append(f"label value {value!r} of {key!r} is invalid")
    if bad:
        details = {"fields": [{"name": "labels", "messages": bad}]}
        raise ApiError(400, "invalid_input", "invalid input in field 'labels'", details)


def _rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rules as the API shows them: every field present."""
    return [
        {"direction": r["direction"], "protocol": r["protocol"], "port": r.get("port"),
         "source_ips": r.get("source_ips", []), "destination_ips": r.get("destination_ips", []),
         "description": r.get("description")}
        for r in rules
    ]  # fmt: skip


def _service(service: dict[str, Any]) -> dict[str, Any]:
    check = service.get("health_check") or {}
    return {
        "protocol": service["protocol"], "listen_port": service["listen_port"],
        "destination_port": service["destination_port"],
        "proxyprotocol": service.get("proxyprotocol", False), "http": None,
        "health_check": {"protocol": check.get("protocol", "tcp"),
                         "port": check.get("port", service["destination_port"]),
                         "interval": check.get("interval", 15), "timeout": check.get("timeout", 10),
                         "retries": check.get("retries", 3), "http": None},
    }  # fmt: skip


def _public(action: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in action.items() if not k.startswith("_")}


def _locations() -> list[dict[str, Any]]:
    return [
        {"id": i, "name": name, "description": description, "country": country, "city": city,
         "latitude": 0.0, "longitude": 0.0, "network_zone": zone}
        for i, (name, description, country, city, zone) in enumerate(LOCATIONS, 1)
    ]  # fmt: skip


def _location(name: str) -> dict[str, Any]:
    for location in _locations():
        if location["name"] == name:
            return location
    raise ApiError(400, "invalid_input", f"location {name} not found",
                   {"fields": [{"name": "location", "messages": ["not found"]}]})  # fmt: skip


def _server_types(sold_out: set[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    ids = {loc[0]: i for i, loc in enumerate(LOCATIONS, 1)}
    return [
        {"id": i, "name": name, "description": name.upper(), "cores": cores, "memory": memory,
         "disk": disk, "deprecated": False, "deprecation": None, "prices": [],
         "storage_type": "local", "cpu_type": "shared", "architecture": arch,
         "locations": [{"id": ids[loc], "name": loc, "deprecation": deprecation,
                        "available": (name, loc) not in (sold_out or set()),
                        "recommended": deprecation is None}
                       for loc, deprecation in places.items()]}
        for i, (name, cores, memory, disk, arch, places) in enumerate(SERVER_TYPES, 1)
    ]  # fmt: skip


def _server_type(name: str) -> dict[str, Any]:
    return next(t for t in _server_types() if t["name"] == name)


def _images(query: dict[str, str]) -> list[dict[str, Any]]:
    images: list[dict[str, Any]] = [
        {"id": i, "name": name, "type": "system", "status": "available", "description": name,
         "architecture": arch, "os_flavor": name.split("-")[0], "os_version": name.split("-")[1],
         "labels": {}, "deprecated": None, "created": NOW}
        for i, (name, arch) in enumerate(itertools.product(IMAGES, ("x86", "arm")), 1)
    ]  # fmt: skip
    if "name" in query:
        images = [i for i in images if i["name"] == query["name"]]
    if "architecture" in query:
        images = [i for i in images if i["architecture"] == query["architecture"]]
    return images


def _network_address(network: dict[str, Any], host: int) -> str:
    base = str(network["subnets"][0]["ip_range"] if network["subnets"] else network["ip_range"])
    return base.split("/")[0].rsplit(".", 1)[0] + f".{host}"


def _fingerprint(key: str) -> str:
    import hashlib

    digest = hashlib.md5(key.encode()).hexdigest()  # noqa: S324 - the API's MD5 format
    return ":".join(digest[i : i + 2] for i in range(0, 32, 2))


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False
