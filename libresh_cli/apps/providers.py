"""How the cluster meets backing-service requirements: `embedded` (a small server in each
instance's namespace, the default) or `external` (a shared server, given once).

Settings live in the namespace libresh-system: the ConfigMap libresh-services (providers,
hosts, ports) and the Secret libresh-services-admin (passwords). Each instance keeps the
provider it was installed with in its record, so changing the setting later never moves an
existing instance away from the database that holds its data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from libresh_cli.apps.model import SERVICE_KINDS
from libresh_cli.apps.params import DOMAIN
from libresh_cli.errors import BadInputError, OperationFailedError
from libresh_cli.kube.client import KubeClient
from libresh_cli.kube.store import SettingsStore

SETTINGS_CONFIGMAP = "libresh-services"
SETTINGS_SECRET = "libresh-services-admin"  # noqa: S105 - the Secret's name
SETTINGS = SettingsStore(SETTINGS_CONFIGMAP, "services.json", SETTINGS_SECRET)
PROVIDERS = ("embedded", "external")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


@dataclass(frozen=True)
class ExternalService:
    kind: str
    host: str
    port: int
    admin_user: str = "postgres"
    sslmode: str = "require"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"host": self.host, "port": self.port}
        if self.kind == "postgres":
            data |= {"admin_user": self.admin_user, "sslmode": self.sslmode}
        return data


def check_external(service: ExternalService) -> ExternalService:
    if service.kind not in SERVICE_KINDS:
        raise BadInputError(
            f"{service.kind!r} is not a backing service libresh knows.",
            hint=f"Known: {', '.join(SERVICE_KINDS)}.",
        )
    host_ok = DOMAIN.fullmatch(service.host.lower()) or _is_ip(service.host)
    if not host_ok:
        raise BadInputError(f"--host {service.host!r} is not a host name or IP address.")
    if not 1 <= service.port <= 65535:
        raise BadInputError(f"--port {service.port} is out of range (1-65535).")
    if service.sslmode not in SSL_MODES:
        modes = ", ".join(SSL_MODES)
        raise BadInputError(f"--sslmode {service.sslmode!r} is not one of {modes}.")
    return service


def _is_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def read_settings(kube: KubeClient) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """(settings by kind, passwords by key); empty when nothing was ever set."""
    settings, passwords = SETTINGS.read(kube)
    return settings or {}, passwords


def save_settings(
    kube: KubeClient, settings: Mapping[str, Any], passwords: Mapping[str, str]
) -> None:
    SETTINGS.write(kube, dict(settings), passwords)


def password_key(kind: str) -> str:
    return "postgres_admin_password" if kind == "postgres" else "redis_password"


def set_provider(
    kube: KubeClient, kind: str, external: ExternalService | None, password: str | None
) -> dict[str, Any]:
    """Make new instances get `kind` embedded (external=None) or from `external`. The
    external server's details and password are kept when going back to embedded: instances
    installed with it still use it."""
    if kind not in SERVICE_KINDS:
        raise BadInputError(
            f"{kind!r} is not a backing service libresh knows.",
            hint=f"Known: {', '.join(SERVICE_KINDS)}.",
        )
    settings, passwords = read_settings(kube)
    current = dict(settings.get(kind, {}))
    if external is None:
        current["provider"] = "embedded"
    else:
        if not password:
            raise BadInputError(
                f"The external {kind} needs its password.",
                hint="Give it with --password-file FILE, or answer the prompt.",
            )
        current = {"provider": "external", "external": check_external(external).to_dict()}
        passwords[password_key(kind)] = password
    settings[kind] = current
    save_settings(kube, settings, passwords)
    return current


def providers_for_new_instance(
    settings: Mapping[str, Mapping[str, Any]], requires: tuple[str, ...]
) -> dict[str, str]:
    return {kind: str(settings.get(kind, {}).get("provider", "embedded")) for kind in requires}


def services_for(
    providers: Mapping[str, str],
    settings: Mapping[str, Mapping[str, Any]],
    passwords: Mapping[str, str],
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """What rendering needs for an instance pinned to `providers`."""
    services: dict[str, dict[str, Any]] = {}
    secrets: dict[str, str] = {}
    for kind, provider in providers.items():
        if provider == "embedded":
            services[kind] = {"provider": "embedded"}
            continue
        details = settings.get(kind, {}).get("external")
        key = password_key(kind)
        if not details or key not in passwords:
            raise OperationFailedError(
                f"This instance uses an external {kind}, but the cluster's settings for it "
                "are gone.",
                hint=f"Set them again: libresh services set {kind} --provider external …",
            )
        services[kind] = {"provider": "external", **details}
        secrets[key] = passwords[key]
    return services, secrets
