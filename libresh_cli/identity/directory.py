"""Users and groups of the `libresh` realm: one account for every app.

A new user gets a temporary password, returned once to the caller to show and never kept by
libresh: Keycloak asks for a new one at the first login (a temporary credential sets the
required action UPDATE_PASSWORD; "Server Administration Guide", "Managing users",
"Creating a password for the user"). Every check runs before the first change, so bad
input changes nothing.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from libresh_cli.errors import BadInputError, ConflictError, NotFoundError
from libresh_cli.identity.connection import DEFAULT_GROUPS, ensure_group, group_id
from libresh_cli.identity.keycloak import KeycloakAdmin

# Keycloak lowercases user names; keep them to what every app accepts as a login.
USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
GROUP = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
# One @, something on each side, a dot in the domain, no spaces: what apps accept.
EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+")
UPDATE_PASSWORD = "UPDATE_PASSWORD"  # noqa: S105 - Keycloak's name of a required action
TEMPORARY_PASSWORD_BYTES = 12


@dataclass(frozen=True)
class User:
    username: str
    email: str
    enabled: bool
    groups: tuple[str, ...] = ()
    must_set_password: bool = False
    id: str = field(default="", repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "email": self.email,
            "enabled": self.enabled,
            "groups": list(self.groups),
            "must_set_password": self.must_set_password,
        }


@dataclass(frozen=True)
class NewPassword:
    """A temporary password, to show once; never stored or logged."""

    username: str
    password: str = field(repr=False)


def check_username(name: str) -> str:
    if not USERNAME.fullmatch(name):
        raise BadInputError(
            f"User name {name!r} is not valid.",
            hint="Use 1 to 64 lowercase letters, digits, '.', '_' or '-', starting with a "
            "letter or digit.",
        )
    return name


def check_email(email: str) -> str:
    if not EMAIL.fullmatch(email) or len(email) > 254:
        raise BadInputError(
            f"--email {email!r} is not an email address.", hint="e.g. --email ada@example.org"
        )
    return email


def check_group_name(name: str) -> str:
    if not GROUP.fullmatch(name):
        raise BadInputError(
            f"Group name {name!r} is not valid.",
            hint="Use 1 to 63 lowercase letters, digits, '_' or '-', starting with a letter or "
            "digit.",
        )
    return name


# -- users -------------------------------------------------------------------------------


def add_user(
    admin: KeycloakAdmin, username: str, email: str, groups: list[str]
) -> tuple[User, NewPassword]:
    check_username(username)
    check_email(email)
    group_ids = {name: _existing_group(admin, check_group_name(name)) for name in groups}
    if _find_user(admin, username) is not None:
        raise ConflictError(
            f"User {username!r} already exists.",
            hint=f"Choose another name, or see it: libresh users show {username}",
        )
    if _email_taken(admin, email):
        raise ConflictError(f"Another user has the email {email!r}.")
    password = _temporary_password()
    user_id = admin.create(
        "/users",
        {
            "username": username,
            "email": email,
            "emailVerified": True,  # the admin vouches for it; no verification mail exists
            "enabled": True,
            "requiredActions": [UPDATE_PASSWORD],
            "credentials": [{"type": "password", "value": password, "temporary": True}],
        },
        f"User {username!r}",
    )
    for group in group_ids.values():
        admin.put(f"/users/{user_id}/groups/{group}", None, f"add {username} to a group")
    return show_user(admin, username), NewPassword(username, password)


def list_users(admin: KeycloakAdmin) -> list[User]:
    found = admin.get("/users", briefRepresentation="false", max="10000")
    return sorted((_user(admin, u) for u in found), key=lambda u: u.username)


def show_user(admin: KeycloakAdmin, username: str) -> User:
    return _user(admin, _require_user(admin, username))


def remove_user(admin: KeycloakAdmin, username: str) -> None:
    found = _require_user(admin, username)
    admin.delete(f"/users/{found['id']}", f"the user {username}")


def reset_password(admin: KeycloakAdmin, username: str) -> NewPassword:
    """A new temporary password: the user sets their own at the next login."""
    found = _require_user(admin, username)
    password = _temporary_password()
    admin.put(
        f"/users/{found['id']}/reset-password",
        {"type": "password", "value": password, "temporary": True},
        f"set a temporary password for {username}",
    )
    return NewPassword(username, password)


def _temporary_password() -> str:
    return secrets.token_urlsafe(TEMPORARY_PASSWORD_BYTES)


def _find_user(admin: KeycloakAdmin, username: str) -> dict[str, Any] | None:
    found = admin.get("/users", username=username, exact="true")
    return next((u for u in found if u.get("username") == username), None)


def _email_taken(admin: KeycloakAdmin, email: str) -> bool:
    found = admin.get("/users", email=email, exact="true")
    return any(str(u.get("email", "")).lower() == email.lower() for u in found)


def _require_user(admin: KeycloakAdmin, username: str) -> dict[str, Any]:
    found = _find_user(admin, username)
    if found is None:
        raise NotFoundError(
            f"No user {username!r} in the identity provider.", hint="See them: libresh users list"
        )
    return found


def _user(admin: KeycloakAdmin, found: dict[str, Any]) -> User:
    groups = admin.get(f"/users/{found['id']}/groups", briefRepresentation="true")
    return User(
        username=str(found["username"]),
        email=str(found.get("email", "")),
        enabled=bool(found.get("enabled", True)),
        groups=tuple(sorted(str(g["name"]) for g in groups)),
        must_set_password=UPDATE_PASSWORD in (found.get("requiredActions") or []),
        id=str(found["id"]),
    )


# -- groups ------------------------------------------------------------------------------


def add_group(admin: KeycloakAdmin, name: str) -> None:
    check_group_name(name)
    if group_id(admin, name) is not None:
        raise ConflictError(f"Group {name!r} already exists.")
    ensure_group(admin, name)


def list_groups(admin: KeycloakAdmin) -> list[dict[str, Any]]:
    rows = []
    for group in admin.get("/groups", briefRepresentation="true"):
        members = admin.get(f"/groups/{group['id']}/members", briefRepresentation="true")
        rows.append(
            {"group": group["name"], "members": sorted(str(m["username"]) for m in members)}
        )
    return sorted(rows, key=lambda r: r["group"])


def remove_group(admin: KeycloakAdmin, name: str) -> None:
    if name in DEFAULT_GROUPS:
        raise BadInputError(
            f"{name!r} is one of libresh's default groups; apps let it in unless told otherwise.",
            hint="Remove its members instead: libresh groups remove-member GROUP USER",
        )
    admin.delete(f"/groups/{_existing_group(admin, name)}", f"the group {name}")


def add_member(admin: KeycloakAdmin, group: str, username: str) -> None:
    group_ref = _existing_group(admin, group)
    user = _require_user(admin, username)
    admin.put(f"/users/{user['id']}/groups/{group_ref}", None, f"add {username} to {group}")


def remove_member(admin: KeycloakAdmin, group: str, username: str) -> None:
    group_ref = _existing_group(admin, group)
    user = _require_user(admin, username)
    admin.delete(f"/users/{user['id']}/groups/{group_ref}", f"{username} from {group}")


def _existing_group(admin: KeycloakAdmin, name: str) -> str:
    found = group_id(admin, name)
    if found is None:
        raise NotFoundError(
            f"No group {name!r} in the identity provider.",
            hint=f"Make it first: libresh groups add {name}",
        )
    return found
