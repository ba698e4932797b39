"""The adapter over Keycloak's admin REST API (httpx): the one place that knows its paths,
its JSON and its errors, translated into libresh's.

Facts relied on, from Keycloak's "Server Administration REST API" reference (26.x) and its
server sources (services/src/main/java/org/keycloak/services/resources/admin/):
- A token for the admin REST API comes from the master realm's token endpoint with the
  `admin-cli` client and the password grant (`/realms/master/protocol/openid-connect/token`).
- Everything else is under `/admin/realms/{realm}/…`; creating answers 201 with a Location
  header ending in the new object's id; a name already taken answers 409.
- Lists filter with `?username=…&exact=true` (users), `?search=…&exact=true` (groups),
  `?clientId=…` (clients).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from libresh_cli.errors import (
    BadInputError,
    ConflictError,
    NotFoundError,
    OperationFailedError,
    UnreachableError,
)

Json = dict[str, Any]
TIMEOUT = httpx.Timeout(15.0, read=60.0)


class KeycloakError(OperationFailedError):
    """Keycloak answered with an error libresh has no better word for."""


@dataclass(frozen=True)
class AdminLogin:
    url: str  # Keycloak's base URL, e.g. https://id.example.org
    user: str
    password: str

    def __repr__(self) -> str:  # never the password, in a traceback or a log
        return f"AdminLogin(url={self.url!r}, user={self.user!r})"


class KeycloakAdmin:
    """Admin REST calls in one realm, with a master-realm admin's token."""

    def __init__(
        self, login: AdminLogin, realm: str, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.login = login
        self.realm = realm
        self.base = login.url.rstrip("/")
        self._http = httpx.Client(timeout=TIMEOUT, transport=transport, follow_redirects=False)
        self._token: str | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KeycloakAdmin:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the token -------------------------------------------------------------------------

    def authenticate(self) -> None:
        """Logs in as the admin; a refused login or an unreachable server says which."""
        response = self._send(
            "POST",
            f"{self.base}/realms/master/protocol/openid-connect/token",
            data={
                "grant_type": "password",
                "client_id": "admin-cli",
                "username": self.login.user,
                "password": self.login.password,
            },
        )
        if response.status_code in (400, 401):
            raise BadInputError(
                f"Keycloak at {self.base} refused the admin login of {self.login.user!r}.",
                hint="Check --admin-user and the password in --admin-password-file (an admin "
                "of the master realm).",
            )
        if response.status_code == 404:
            raise BadInputError(
                f"{self.base} has no Keycloak master realm (404 at its token endpoint).",
                hint="Give Keycloak's base URL, e.g. https://id.example.org (no /admin, no "
                "/realms/...).",
            )
        _check(response, "log in as the admin")
        self._token = str(response.json()["access_token"])

    # -- requests --------------------------------------------------------------------------

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, url, **kwargs)
        except httpx.TransportError as error:
            raise UnreachableError(
                f"Keycloak at {self.base} is unreachable ({type(error).__name__}).",
                hint="Check the URL and that the server runs: libresh identity status.",
            ) from error

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call under /admin/realms/{realm}; `path` starts with / ('' for the realm)."""
        if self._token is None:
            self.authenticate()
        url = f"{self.base}/admin/realms/{self.realm}{path}"
        response = self._send(method, url, headers=self._headers(), **kwargs)
        if response.status_code == 401:  # the token expired during a long run: once more
            self.authenticate()
            response = self._send(method, url, headers=self._headers(), **kwargs)
        return response

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def get(self, path: str, **params: Any) -> Any:
        response = self.request("GET", path, params=params or None)
        _check(response, f"read {path or 'the realm'}")
        return response.json()

    def find(self, path: str, **params: Any) -> Any | None:
        """GET that answers None for 404."""
        response = self.request("GET", path, params=params or None)
        if response.status_code == 404:
            return None
        _check(response, f"read {path}")
        return response.json()

    def create(self, path: str, body: Mapping[str, Any], what: str) -> str:
        """POST a new object; its id (from the Location header), or ConflictError if taken."""
        response = self.request("POST", path, json=dict(body))
        if response.status_code == 409:
            raise ConflictError(f"{what} already exists.")
        _check(response, f"create {what}")
        location = str(response.headers.get("Location", ""))
        return location.rstrip("/").rsplit("/", 1)[-1]

    def post(self, path: str, body: Any, what: str) -> httpx.Response:
        response = self.request("POST", path, json=body)
        _check(response, what)
        return response

    def put(self, path: str, body: Any, what: str) -> None:
        _check(self.request("PUT", path, json=body), what)

    def delete(self, path: str, what: str, body: Any = None) -> bool:
        """True when deleted, False when it was already gone."""
        response = self.request("DELETE", path, json=body)
        if response.status_code == 404:
            return False
        _check(response, f"delete {what}")
        return True

    # -- the realm -------------------------------------------------------------------------

    def ensure_realm(self) -> bool:
        """Creates the realm when missing; True when it was created."""
        if self._token is None:
            self.authenticate()
        found = self._send("GET", f"{self.base}/admin/realms/{self.realm}", headers=self._headers())
        if found.status_code == 200:
            return False
        if found.status_code != 404:
            _check(found, f"read the realm {self.realm}")
        created = self._send(
            "POST",
            f"{self.base}/admin/realms",
            headers=self._headers(),
            json={"realm": self.realm, "enabled": True},
        )
        if created.status_code == 409:  # made meanwhile by another run
            return False
        _check(created, f"create the realm {self.realm}")
        return True

    def issuer(self) -> str:
        return f"{self.base}/realms/{self.realm}"


def _check(response: httpx.Response, what: str) -> None:
    if response.status_code < 400:
        return
    detail = _error_text(response)
    if response.status_code == 404:
        raise NotFoundError(f"Keycloak could not {what}: not found ({detail}).")
    if response.status_code == 403:
        raise BadInputError(
            f"Keycloak refused to {what}: the admin lacks the right ({detail}).",
            hint="Connect with an admin of the master realm: libresh identity connect.",
        )
    if response.status_code == 400:
        raise BadInputError(f"Keycloak refused to {what}: {detail}.")
    raise KeycloakError(f"Keycloak could not {what}: HTTP {response.status_code} ({detail}).")


def _error_text(response: httpx.Response) -> str:
    """Keycloak's own message (errorMessage / error_description / error), trimmed: never the
    request, which may hold a password."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or str(response.status_code)
    if isinstance(body, dict):
        for key in ("errorMessage", "error_description", "error"):
            if body.get(key):
                return str(body[key])[:200]
    return response.reason_phrase or str(response.status_code)
