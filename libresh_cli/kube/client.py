"""A small Kubernetes API client: server-side apply, get/list/delete, discovery and waits.

Few round trips by design: discovery is the aggregated kind (two requests for every group and
version), apply is one PATCH per object, and independent objects are applied concurrently.
Every failure leaves here as a LibreshError that says which server and kubeconfig were used.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from itertools import groupby
from typing import Any, Self, TypeVar

import httpx

from libresh_cli.errors import ExitCode, LibreshError, NotFoundError, UnreachableError
from libresh_cli.kube.connection import Connection, KubeTarget, load_connection
from libresh_cli.kube.retry import RetryPolicy

FIELD_MANAGER = "libresh"
DISCOVERY_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
)
# Objects others depend on go first (CRDs before their objects, namespaces before what they
# hold, config before the workloads that mount it); deletion walks the same list backwards.
KIND_ORDER = (
    "CustomResourceDefinition",
    "Namespace",
    "PriorityClass",
    "StorageClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "Secret",
    "ConfigMap",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "NetworkPolicy",
    "LimitRange",
    "ResourceQuota",
    "Service",
)
MAX_ERROR_TEXT = 400
CLOCKS_AGREE = timedelta(seconds=2)
LIST_PAGE = 500
CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
log = logging.getLogger(__name__)

T = TypeVar("T")
Manifest = dict[str, Any]


@dataclass(frozen=True)
class ResourceType:
    api_version: str
    kind: str
    plural: str
    namespaced: bool


class KubeApiError(LibreshError):
    """The API server answered with an error Status."""

    def __init__(self, status: int, reason: str, message: str, *, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.status = status
        self.reason = reason
        self.exit_code = _exit_code_for(status)


def _exit_code_for(status: int) -> ExitCode:
    return {
        400: ExitCode.BAD_INPUT,
        404: ExitCode.NOT_FOUND,
        409: ExitCode.CONFLICT,
        422: ExitCode.BAD_INPUT,
    }.get(status, ExitCode.FAILURE)


def apply_rank(manifest: Mapping[str, Any]) -> int:
    kind = str(manifest.get("kind", ""))
    if kind in KIND_ORDER:
        return KIND_ORDER.index(kind)
    # Workloads next; custom resources (any group we do not know) last, after their CRDs.
    api_version = str(manifest.get("apiVersion", ""))
    builtin = (
        "/" not in api_version
        or api_version.split("/")[0].endswith(".k8s.io")
        or (api_version.split("/")[0] in ("apps", "batch", "autoscaling", "policy"))
    )
    return len(KIND_ORDER) + (0 if builtin else 1)


def api_prefix(api_version: str) -> str:
    return f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"


class KubeClient:
    def __init__(
        self,
        connection: Connection,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.connection = connection
        extras = connection.extras
        # Impersonation as kubectl sends it: one header per group.
        base_headers = [
            ("User-Agent", "libresh"),
            ("Accept", "application/json"),
            *extras.headers.items(),
            *(("Impersonate-Group", group) for group in extras.impersonate_groups),
        ]
        self._http = httpx.Client(
            base_url=connection.server,
            verify=connection.ssl_context,
            transport=transport,
            timeout=timeout,
            headers=base_headers,
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
            # The proxy was chosen from the kubeconfig and the environment as kubectl does
            # (NO_PROXY CIDR blocks included, which httpx does not read).
            proxy=extras.proxy,
            trust_env=False,
        )
        # The name the server's certificate is checked against when it is not the address's
        # (the kubeconfig's tls-server-name): httpx passes it to the TLS handshake.
        self._extensions = (
            {"sni_hostname": extras.tls_server_name} if extras.tls_server_name else None
        )
        self._types: dict[tuple[str, str], ResourceType] | None = None
        self._lock = threading.Lock()
        self.request_count = 0
        self.retry = retry or RetryPolicy()
        # Whether the server has answered this client once: until then it may not be there
        # at all (a wrong address, a stopped lab) and libresh says so at once; after, a refused
        # connection is a restart (k3s upgrading itself) worth waiting through.
        self._answered = False
        self._clock_offset = timedelta(0)

    @classmethod
    def connect(cls, target: KubeTarget, **kwargs: Any) -> Self:
        return cls(load_connection(target), **kwargs)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- requests ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str | None = None,
    ) -> Any:
        headers = {"Content-Type": content_type} if body is not None else {}
        if accept:
            headers["Accept"] = accept
        content = json.dumps(body) if body is not None else None
        retries = self.retry.schedule(answered=self._answered)
        renewed = False
        while True:
            authorization = self.connection.authorization()
            if authorization:
                headers["Authorization"] = authorization
            with self._lock:
                self.request_count += 1
            started = time.perf_counter()
            try:
                response = self._http.request(
                    method,
                    path,
                    params=params,
                    content=content,
                    headers=headers,
                    extensions=self._extensions,
                )
            except httpx.TransportError as error:
                pause = retries.after_transport_error(method, error)
                if pause is None:
                    raise self._unreachable(error) from error
                log.debug("%s %s: %s; again in %.1f s", method, path, type(error).__name__, pause)
                self.retry.sleep(pause)
                continue
            # Method, path and status only: bodies may hold Secrets.
            log.debug(
                "%s %s -> %d (%.0f ms)",
                method,
                path,
                response.status_code,
                (time.perf_counter() - started) * 1000,
            )
            self._answered = True
            self._note_server_clock(response)
            if response.status_code == 401 and not renewed and self.connection.extras.refreshable:
                # A token refused before its expiry (revoked, rotated): what kubectl does,
                # ask the exec plugin (or token file) for a new one once.
                renewed = True
                self._renew_credentials()
                continue
            pause = retries.after_status(method, response)
            if pause is None:
                break
            self.retry.sleep(pause)
        if response.status_code >= 400:
            raise _api_error(response, method, path)
        return response.json() if response.content else None

    def _renew_credentials(self) -> None:
        with self._lock:
            fresh = load_connection(self.connection.target)
            self.connection.authorization = fresh.authorization

    def _note_server_clock(self, response: httpx.Response) -> None:
        date = response.headers.get("Date")
        if date:
            try:
                server = parsedate_to_datetime(date)
            except (TypeError, ValueError):
                return
            offset = server - datetime.now(UTC)
            # The Date is cut to the second: within two seconds the clocks agree (the same
            # machine, or both on NTP) and this machine's finer clock is the better one.
            self._clock_offset = (
                timedelta(0) if abs(offset) < CLOCKS_AGREE else offset + timedelta(seconds=0.5)
            )

    def server_now(self) -> datetime:
        """The API server's time, from the Date of its last answer (to the second): what
        leases are judged by, whatever this machine's clock says."""
        return datetime.now(UTC) + self._clock_offset

    def healthy(self, path: str = "/readyz") -> bool:
        """True when the API server answers its health endpoint with 200; never raises."""
        headers = {}
        authorization = self.connection.authorization()
        if authorization:
            headers["Authorization"] = authorization
        try:
            response = self._http.get(path, headers=headers, timeout=5.0)
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def _unreachable(self, error: httpx.TransportError) -> UnreachableError:
        reason = str(error) or type(error).__name__
        return UnreachableError(
            f"Cannot reach the Kubernetes API at {self.connection.server} "
            f"({self.connection.target.describe()}): {reason}",
            hint="Is the cluster running and the address right? For the lab cluster: "
            "`libresh lab status`. Another cluster: --kubeconfig / --context.",
        )

    # -- discovery --------------------------------------------------------------------------

    def discover(self, *, refresh: bool = False) -> dict[tuple[str, str], ResourceType]:
        if self._types is None or refresh:
            types: dict[tuple[str, str], ResourceType] = {}
            for path in ("/api", "/apis"):
                document = self.request("GET", path, accept=DISCOVERY_ACCEPT)
                types.update(parse_aggregated_discovery(document))
            self._types = types
        return self._types

    def resource_type(self, api_version: str, kind: str) -> ResourceType:
        found = self.discover().get((api_version, kind))
        if found is None:  # maybe a CRD registered since we looked
            found = self.discover(refresh=True).get((api_version, kind))
        if found is None:
            raise NotFoundError(
                f"The cluster at {self.connection.server} has no {kind} in {api_version}.",
                hint="Is the CustomResourceDefinition (or the API group) installed?",
            )
        return found

    def path_for(
        self, api_version: str, kind: str, name: str | None = None, namespace: str | None = None
    ) -> str:
        kind_type = self.resource_type(api_version, kind)
        path = api_prefix(api_version)
        if kind_type.namespaced and namespace:
            path += f"/namespaces/{namespace}"
        path += f"/{kind_type.plural}"
        return f"{path}/{name}" if name else path

    # -- objects ----------------------------------------------------------------------------

    def apply(
        self, manifest: Manifest, *, namespace: str | None = None, dry_run: bool = False
    ) -> Manifest:
        """Server-side apply, forcing ownership of the fields we set (we are their manager).
        With dry_run the server validates and returns the result without storing it."""
        metadata = manifest.get("metadata", {})
        kind_type = self.resource_type(manifest["apiVersion"], manifest["kind"])
        target_namespace = metadata.get("namespace") or namespace
        if kind_type.namespaced and not target_namespace:
            target_namespace = "default"
        path = self.path_for(
            manifest["apiVersion"], manifest["kind"], metadata["name"], target_namespace
        )
        params = {"fieldManager": FIELD_MANAGER, "force": "true"}
        if dry_run:
            params["dryRun"] = "All"
        result: Manifest = self.request(
            "PATCH",
            path,
            params=params,
            body=manifest,
            content_type="application/apply-patch+yaml",
        )
        return result

    def apply_all(
        self,
        manifests: Iterable[Manifest],
        *,
        namespace: str | None = None,
        workers: int = 8,
        dry_run: bool = False,
    ) -> list[Manifest]:
        """Apply in dependency order, objects of the same rank concurrently; the results come
        back in the order the manifests were given."""
        given = list(manifests)
        order = sorted(range(len(given)), key=lambda i: apply_rank(given[i]))
        results: list[Manifest | None] = [None] * len(given)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _, group in groupby(order, key=lambda i: apply_rank(given[i])):
                batch = list(group)
                applied = pool.map(
                    lambda i: self.apply(given[i], namespace=namespace, dry_run=dry_run), batch
                )
                for index, result in zip(batch, applied, strict=True):
                    results[index] = result
                crds = [given[i] for i in batch if given[i].get("kind") == CRD[1]]
                if crds and not dry_run:
                    self._wait_established([c["metadata"]["name"] for c in crds])
        return [r for r in results if r is not None]

    def _wait_established(self, names: list[str]) -> None:
        """Objects of a CustomResourceDefinition just made are refused (404) until the API
        server has established it: wait for that, then learn its kinds."""
        poll = self.poller()

        def established() -> bool | None:
            for name in names:
                crd = poll.get(*CRD, name)
                conditions = ((crd or {}).get("status") or {}).get("conditions") or []
                if not any(
                    c.get("type") == "Established" and c.get("status") == "True" for c in conditions
                ):
                    return None
            return True

        wait_for(f"{', '.join(names)} to be established", established, timeout=60, interval=0.1)
        self.discover(refresh=True)

    def get_many(
        self, refs: Iterable[tuple[str, str, str]], namespace: str | None, workers: int = 8
    ) -> list[Manifest | None]:
        """GET several objects concurrently; None for those that do not exist."""
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda r: self.get(r[0], r[1], r[2], namespace), refs))

    def get(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        not_older_than: str | None = None,
    ) -> Manifest | None:
        """The object, None if it does not exist. With `not_older_than` (a resourceVersion
        already seen) the API server may answer from its watch cache instead of a quorum read
        of etcd, with nothing older than that version."""
        params = {"resourceVersion": not_older_than} if not_older_than else None
        try:
            found: Manifest = self.request(
                "GET", self.path_for(api_version, kind, name, namespace), params=params
            )
        except KubeApiError as error:
            if error.status == 404:
                return None
            raise
        return found

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        not_older_than: str | None = None,
    ) -> list[Manifest]:
        items: list[Manifest] = self.list_document(
            api_version,
            kind,
            namespace,
            label_selector=label_selector,
            not_older_than=not_older_than,
        )["items"]
        return items

    def list_document(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        not_older_than: str | None = None,
    ) -> Manifest:
        """The list with every item, read in pages of LIST_PAGE (a large cluster's pods do
        not come in one answer), or, with `not_older_than`, from the watch cache at once."""
        path = self.path_for(api_version, kind, namespace=namespace)
        params = {"labelSelector": label_selector} if label_selector else {}
        if not_older_than:
            params |= {"resourceVersion": not_older_than, "resourceVersionMatch": "NotOlderThan"}
            document: Manifest = self.request("GET", path, params=params)
            document["items"] = document.get("items") or []
            return document
        items: list[Manifest] = []
        params["limit"] = str(LIST_PAGE)
        while True:
            document = self.request("GET", path, params=params)
            items += document.get("items") or []
            token = (document.get("metadata") or {}).get("continue")
            if not token:
                document["items"] = items
                return document
            params["continue"] = str(token)

    def poller(self) -> Poller:
        return Poller(self)

    def create(self, manifest: Manifest) -> Manifest:
        metadata = manifest.get("metadata", {})
        path = self.path_for(
            manifest["apiVersion"], manifest["kind"], None, metadata.get("namespace")
        )
        created: Manifest = self.request("POST", path, body=manifest)
        return created

    def replace(self, manifest: Manifest) -> Manifest:
        """PUT the whole object; with metadata.resourceVersion set, only if nobody changed it
        since (409 otherwise)."""
        metadata = manifest.get("metadata", {})
        path = self.path_for(
            manifest["apiVersion"], manifest["kind"], metadata["name"], metadata.get("namespace")
        )
        replaced: Manifest = self.request("PUT", path, body=manifest)
        return replaced

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete (children in the background); False when it was already gone."""
        try:
            self.request(
                "DELETE",
                self.path_for(api_version, kind, name, namespace),
                body={"propagationPolicy": "Background"},
            )
        except KubeApiError as error:
            if error.status == 404:
                return False
            raise
        return True

    def delete_and_wait(
        self, api_version: str, kind: str, name: str, namespace: str | None, timeout: float = 120
    ) -> bool:
        """Delete, then wait until the object is gone (a name about to be reused: a Job run
        again). False when there was nothing to delete."""
        if not self.delete(api_version, kind, name, namespace):
            return False

        poll = self.poller()

        def gone() -> bool | None:
            return True if poll.get(api_version, kind, name, namespace) is None else None

        wait_for(f"{kind} {name} to be deleted", gone, timeout=timeout)
        return True

    def scale(self, api_version: str, kind: str, name: str, namespace: str, replicas: int) -> None:
        """Set a workload's replicas through its scale subresource (a merge patch, so the
        rest of what `libresh` applied stays as it is; the next apply sets them back)."""
        self.request(
            "PATCH",
            self.path_for(api_version, kind, name, namespace) + "/scale",
            body={"spec": {"replicas": replicas}},
            content_type="application/merge-patch+json",
        )

    def server_version(self) -> str:
        return str(self.request("GET", "/version")["gitVersion"])


class Poller:
    """Reads for a wait loop, light on the API server (a Raspberry Pi's, polled for half an
    hour by a hook): the first read of each thing is a quorum read; the next ones name the
    resourceVersion last seen, so the server answers from its watch cache, never with
    anything older than what this loop already saw (an HA cluster's servers each have their
    own cache: a plain resourceVersion=0 read could go back in time)."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube
        self._seen: dict[tuple[str, ...], str] = {}

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Manifest | None:
        key = (api_version, kind, name, namespace or "")
        seen = self._seen.get(key)
        found = self.kube.get(api_version, kind, name, namespace, not_older_than=seen)
        if found is not None:
            self._seen[key] = str(found["metadata"]["resourceVersion"])
        return found

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> list[Manifest]:
        key = (api_version, kind, namespace or "", label_selector or "")
        document = self.kube.list_document(
            api_version,
            kind,
            namespace,
            label_selector=label_selector,
            not_older_than=self._seen.get(key),
        )
        version = (document.get("metadata") or {}).get("resourceVersion")
        if version:
            self._seen[key] = str(version)
        items: list[Manifest] = document["items"]
        return items


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.2,
    max_interval: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `probe` until it returns something other than None, backing off between calls."""
    deadline = clock() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if clock() >= deadline:
            raise WaitTimeoutError(what, timeout)
        sleep(interval)
        interval = min(interval * 1.5, max_interval)


class WaitTimeoutError(LibreshError):
    exit_code = ExitCode.FAILURE

    def __init__(self, what: str, timeout: float) -> None:
        super().__init__(f"Timed out after {timeout:.0f}s waiting for {what}.")
        self.what = what


def parse_aggregated_discovery(document: Mapping[str, Any]) -> dict[tuple[str, str], ResourceType]:
    """Map (apiVersion, kind) to its resource, from an APIGroupDiscoveryList document."""
    if document.get("kind") != "APIGroupDiscoveryList":
        raise LibreshError(
            "The API server does not offer aggregated discovery (Kubernetes 1.30 or newer).",
            hint="libresh supports k3s and Kubernetes 1.30+; upgrade the cluster.",
        )
    types: dict[tuple[str, str], ResourceType] = {}
    for group in document.get("items", []):
        group_name = group.get("metadata", {}).get("name", "")
        for version in group.get("versions", []):
            api_version = f"{group_name}/{version['version']}" if group_name else version["version"]
            for resource in version.get("resources", []):
                kind = resource.get("responseKind", {}).get("kind")
                if not kind:
                    continue
                types.setdefault(
                    (api_version, kind),
                    ResourceType(
                        api_version=api_version,
                        kind=kind,
                        plural=resource["resource"],
                        namespaced=resource.get("scope") == "Namespaced",
                    ),
                )
    return types


def _api_error(response: httpx.Response, method: str, path: str) -> KubeApiError:
    """Turn an error response into a short message; bodies are cut so nothing large (or secret,
    such as an echoed Secret) is carried into logs or the terminal."""
    try:
        status = response.json()
    except ValueError:
        status = {}
    message = str(status.get("message") or response.reason_phrase)[:MAX_ERROR_TEXT]
    reason = str(status.get("reason") or "")
    hint = None
    if response.status_code in (401, 403):
        hint = "The credentials in the kubeconfig were refused or lack permission."
    return KubeApiError(
        response.status_code,
        reason,
        f"The Kubernetes API refused {method} {path}: {message} ({response.status_code})",
        hint=hint,
    )
