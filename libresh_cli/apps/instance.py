"""The instance: one installed copy of an app, at one version, with its values, credentials
and backing services. Every service works on it; libresh_cli/apps/render.py turns it into
Kubernetes objects. Its name is also its namespace, and the labels it puts on every object
are how libresh finds what is its."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field, replace
from typing import Any

from libresh_cli.apps.model import App, Version

MANAGED_BY = "app.kubernetes.io/managed-by"
INSTANCE = "app.kubernetes.io/instance"
APP_NAME = "app.kubernetes.io/name"
APP_VERSION = "app.kubernetes.io/version"


@dataclass(frozen=True)
class Instance:
    """One installed copy of an app: its name is also its namespace."""

    name: str
    app: App
    version: Version
    params: Mapping[str, Any]  # every parameter's value, secrets excluded
    secret_values: Mapping[str, str] = field(default_factory=dict, repr=False)
    # kind -> provider and its settings (host, port…); absent means `embedded`
    services: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # passwords of external services (admin of the shared PostgreSQL, the shared Redis)
    service_secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    # What follows is given by name only: these three mappings would take each other's values
    # without a word from the type checker if passed by position (the relay once went into
    # `links` that way, and the apps that require mail ran without it).
    _: KW_ONLY
    # the cluster's SMTP relay (libresh_cli/apps/relay.py), for an app that requires mail;
    # empty: no relay is set, the app runs with mail off
    mail: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Other instances this one works with (libresh_cli/apps/links.py): "uses" maps each role
    # of app.yaml's `uses` to the chosen instance ({instance, app, domain, url}), "used_by"
    # lists the instances that use this one ({instance, app, role, domain, url}).
    links: Mapping[str, Any] = field(default_factory=dict)
    # The connection values of its OIDC client (libresh_cli/identity/oidc.py CONNECTION_KEYS),
    # for an app that requires oidc; the client secret among them.
    oidc: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def uses(self) -> dict[str, str]:
        """role -> the name of the instance chosen for it."""
        return {role: str(used["instance"]) for role, used in self.links.get("uses", {}).items()}

    def provider(self, kind: str) -> str:
        return str(self.services.get(kind, {}).get("provider", "embedded"))

    @property
    def namespace(self) -> str:
        return self.name

    @property
    def domain(self) -> str | None:
        value = self.params.get("domain")
        return str(value) if value else None

    @property
    def url(self) -> str | None:
        return f"https://{self.domain}" if self.domain else None

    def labels(self) -> dict[str, str]:
        return {
            MANAGED_BY: "libresh",
            INSTANCE: self.name,
            APP_NAME: self.app.name,
            APP_VERSION: self.version.version,
        }

    def at_version(self, version: Version) -> Instance:
        """The same instance at another version of its app (an upgrade's step, a restore of
        a backup taken with another version)."""
        return replace(self, version=version)
