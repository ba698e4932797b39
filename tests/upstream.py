"""Upstream files for the tests: CRDs and chart schemas as the projects publish them, fetched
from the Go module proxy (their repositories are Go modules), instead of stand-ins written here.

Each module is pinned by version and by the SHA-256 of the zip the proxy serves, downloaded once
into the user's cache (`upstream/` beside the lab's binaries) and read from there afterwards, like
the lab's control plane. A changed or truncated download is refused, never used.

What has no Go module on this machine's proxy stays a stand-in, named so where it is used:
the hcloud cloud-controller-manager and CSI charts and system-upgrade-controller (their module
paths answer "not available"), k3s itself.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from libresh_cli.settings import Paths

DEFAULT_PROXY = "https://proxy.golang.org"
DOWNLOAD_TIMEOUT = 120.0


@dataclass(frozen=True)
class GoModule:
    path: str
    version: str
    sha256: str  # of the zip the proxy serves for path@version

    @property
    def zip_name(self) -> str:
        return f"{self.path.replace('/', '+')}@{self.version}.zip"

    def member(self, inner: str) -> str:
        return f"{self.path}@{self.version}/{inner}"


# The version libresh_cli/infra/profiles/single.yaml pins for cert-manager's chart.
CERT_MANAGER = GoModule(
    "github.com/cert-manager/cert-manager",
    "v1.19.4",
    "5c7e542167082e4beb39ce3643d8e61b070d42faaf6b782d41a974620da0724e",
)
# What k3s' go.mod requires on its release-1.33 branch (v1.33.7+k3s3); k3s' own module is not
# served by this proxy, so 1.34's requirement could not be read. HelmChart and HelmChartConfig
# have kept group, version and field names across the 0.16 series.
HELM_CONTROLLER = GoModule(
    "github.com/k3s-io/helm-controller",
    "v0.16.17",
    "4409f18c9cc83bdc3c7916a9bd0d2f6bb28374476647bf62e20153f7fc9aa72e",
)

CERT_MANAGER_CRDS = tuple(
    f"deploy/crds/{name}.yaml"
    for name in (
        "cert-manager.io_certificates",
        "cert-manager.io_certificaterequests",
        "cert-manager.io_issuers",
        "cert-manager.io_clusterissuers",
        "acme.cert-manager.io_orders",
        "acme.cert-manager.io_challenges",
    )
)
HELM_CONTROLLER_CRDS = (
    "pkg/crds/yaml/generated/helm.cattle.io_helmcharts.yaml",
    "pkg/crds/yaml/generated/helm.cattle.io_helmchartconfigs.yaml",
)
CERT_MANAGER_VALUES_SCHEMA = "deploy/charts/cert-manager/values.schema.json"


class UpstreamUnavailable(RuntimeError):
    """The proxy could not be reached or served something else than the pinned zip."""


def cache_root() -> Path:
    """Beside the lab's binaries, in the user's cache: shared by every test run."""
    return Paths.from_env().cache / "upstream"


def _proxy() -> str:
    """The first proxy of GOPROXY that is a URL (not `direct` or `off`)."""
    for entry in os.environ.get("GOPROXY", DEFAULT_PROXY).replace("|", ",").split(","):
        if entry.startswith(("https://", "http://")):
            return entry.rstrip("/")
    return DEFAULT_PROXY


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def module_zip(module: GoModule, cache: Path | None = None) -> Path:
    """The module's zip, from the cache or downloaded once and checked against its pin."""
    target = (cache or cache_root()) / module.zip_name
    if target.exists() and _sha256(target.read_bytes()) == module.sha256:
        return target
    url = f"{_proxy()}/{module.path.lower()}/@v/{module.version}.zip"
    try:
        response = httpx.get(url, timeout=DOWNLOAD_TIMEOUT, follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPError as error:
        raise UpstreamUnavailable(f"{url}: {error}") from error
    if (digest := _sha256(response.content)) != module.sha256:
        raise UpstreamUnavailable(f"{url}: sha256 {digest}, pinned {module.sha256}")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: a concurrent test run never reads half a zip.
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as part:
        part.write(response.content)
    Path(part.name).replace(target)
    return target


def module_file(module: GoModule, inner: str, cache: Path | None = None) -> bytes:
    with zipfile.ZipFile(io.BytesIO(module_zip(module, cache).read_bytes())) as archive:
        return archive.read(module.member(inner))


def _documents(
    module: GoModule, files: tuple[str, ...], cache: Path | None
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for inner in files:
        found.extend(d for d in yaml.safe_load_all(module_file(module, inner, cache)) if d)
    return found


def k3s_crds(cache: Path | None = None) -> list[dict[str, Any]]:
    """The kinds a k3s server with libresh's infra has: helm-controller's (k3s registers them
    at start) and cert-manager's (its chart installs them with `crds.enabled`)."""
    return _documents(HELM_CONTROLLER, HELM_CONTROLLER_CRDS, cache) + _documents(
        CERT_MANAGER, CERT_MANAGER_CRDS, cache
    )


def cert_manager_crd(plural: str, cache: Path | None = None) -> dict[str, Any]:
    for crd in _documents(CERT_MANAGER, CERT_MANAGER_CRDS, cache):
        if crd["metadata"]["name"] == f"{plural}.cert-manager.io":
            return crd
    raise KeyError(plural)


def cert_manager_values_schema(cache: Path | None = None) -> dict[str, Any]:
    text = module_file(CERT_MANAGER, CERT_MANAGER_VALUES_SCHEMA, cache)
    schema: dict[str, Any] = json.loads(text)
    return schema
