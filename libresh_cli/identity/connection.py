"""The cluster's identity provider: which Keycloak, and how libresh logs in to administer it.

Kept in libresh-system like the other settings (libresh_cli/kube/store.py): the ConfigMap
libresh-identity holds the URLs, the realm and the admin's name; the Secret
libresh-identity-admin holds the admin's password. Nothing is written on the laptop.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from libresh_cli.errors import (
    BadInputError,
    LibreshError,
    PrerequisiteError,
    UnreachableError,
)
from libresh_cli.identity.keycloak import AdminLogin, KeycloakAdmin
from libresh_cli.kube.client import KubeClient
from libresh_cli.kube.store import SettingsStore

STORE = SettingsStore("libresh-identity", "identity.json", "libresh-identity-admin")
REALM = "libresh"
DEFAULT_GROUPS = ("admins", "members")
URL = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?")


@dataclass(frozen=True)
class Provider:
    url: str
    admin_user: str
    admin_password: str
    realm: str = REALM
    instance: str | None = None  # the catalog instance that runs it (identity enable)

    def __repr__(self) -> str:
        return f"Provider(url={self.url!r}, realm={self.realm!r}, instance={self.instance!r})"

    @property
    def issuer(self) -> str:
        return f"{self.url}/realms/{self.realm}"

    def public(self) -> dict[str, Any]:
        """What may be shown: never the password."""
        return {
            "provider": "keycloak",
            "url": self.url,
            "issuer": self.issuer,
            "realm": self.realm,
            "admin_user": self.admin_user,
            "instance": self.instance,
        }


def check_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not URL.fullmatch(url):
        raise BadInputError(
            f"--url {url!r} is not an http(s) URL of a server.",
            hint="Give Keycloak's base URL, e.g. https://id.example.org.",
        )
    return url


def connect(
    kube: KubeClient,
    url: str,
    admin_user: str,
    admin_password: str,
    *,
    instance: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Provider:
    """Checks the admin login, makes the realm and the default groups, then saves the
    provider: nothing is saved when the server is unreachable or refuses the login."""
    if not admin_user.strip():
        raise BadInputError("--admin-user is empty.")
    if not admin_password:
        raise BadInputError("The admin password is empty.", hint="Check --admin-password-file.")
    provider = Provider(check_url(url), admin_user, admin_password, instance=instance)
    with _admin(provider, transport) as admin:
        admin.authenticate()
        admin.ensure_realm()
        names_optional(admin)
        for group in DEFAULT_GROUPS:
            ensure_group(admin, group)
    document = {k: v for k, v in provider.public().items() if k not in ("issuer", "provider")}
    STORE.write(kube, document, {"admin_password": admin_password})
    return provider


def names_optional(admin: KeycloakAdmin) -> None:
    """Makes first and last names optional in the realm's user profile. Keycloak's default
    profile requires them of users ("Server Administration Guide", "Managing users", "User
    Profile"), so a user made with a name and an email would be stopped at the first login by
    a profile form; libresh's users have a user name and an email, which is what apps need."""
    profile = admin.get("/users/profile")
    changed = False
    for attribute in profile.get("attributes", []):
        if attribute.get("name") in ("firstName", "lastName") and attribute.get("required"):
            attribute.pop("required")
            changed = True
    if changed:
        admin.put("/users/profile", profile, "make first and last names optional")


def ensure_group(admin: KeycloakAdmin, name: str) -> str:
    """The group's id, made when missing."""
    found = group_id(admin, name)
    return found if found is not None else admin.create("/groups", {"name": name}, name)


def group_id(admin: KeycloakAdmin, name: str) -> str | None:
    found = admin.get("/groups", search=name, exact="true", briefRepresentation="true")
    return next((str(g["id"]) for g in found if g.get("name") == name), None)


def load(kube: KubeClient) -> Provider | None:
    document, secrets = STORE.read(kube)
    if not document or "admin_password" not in secrets:
        return None
    return Provider(
        url=document["url"],
        admin_user=document["admin_user"],
        admin_password=secrets["admin_password"],
        realm=document.get("realm", REALM),
        instance=document.get("instance"),
    )


def require(kube: KubeClient) -> Provider:
    found = load(kube)
    if found is None:
        raise PrerequisiteError(
            "No identity provider is connected to this cluster.",
            hint="Run `libresh identity enable --domain id.example.org` (Keycloak from the "
            "catalog), or `libresh identity connect --url URL --admin-user U "
            "--admin-password-file F` for one you run already.",
        )
    return found


def _admin(provider: Provider, transport: httpx.BaseTransport | None = None) -> KeycloakAdmin:
    return KeycloakAdmin(
        AdminLogin(provider.url, provider.admin_user, provider.admin_password),
        provider.realm,
        transport=transport,
    )


@contextmanager
def administer(
    kube: KubeClient, transport: httpx.BaseTransport | None = None
) -> Iterator[KeycloakAdmin]:
    """An admin session on the connected provider's realm."""
    with _admin(require(kube), transport) as admin:
        yield admin


def status(kube: KubeClient, transport: httpx.BaseTransport | None = None) -> dict[str, Any]:
    """The provider, whether it answers and lets libresh in, and how many users and groups."""
    provider = require(kube)
    result: dict[str, Any] = provider.public()
    with _admin(provider, transport) as admin:
        try:
            admin.authenticate()
            result["users"] = int(admin.get("/users/count"))
            result["groups"] = len(admin.get("/groups", briefRepresentation="true"))
            result["reachable"] = True
        except UnreachableError as error:
            result |= {"reachable": False, "problem": error.message}
        except LibreshError as error:  # it answers, but refuses libresh or fails
            result |= {"reachable": True, "problem": error.message}
    return result
