"""The catalog's apps with single sign-on on, on the lab against the real Keycloak of
tests/integration/test_identity.py: `libresh install APP --set single_sign_on=true` makes the
app's client with the redirect URI its NOTES.md gives (https://DOMAIN + the app's callback),
hands the pod the Secret libresh-oidc, and a real authorization-code sign-in through that very
redirect URI is answered with a code the client secret exchanges; uninstall removes the client.
kwok runs no container: what the images do with the variables is in each NOTES.md."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from libresh_cli.apps.catalog import builtin_catalog
from libresh_cli.apps.schema import load_app
from tests.integration.conftest import Lab
from tests.integration.keycloak import Keycloak
from tests.integration.test_identity import (
    connected,
    connection_secret,
    exchange_code,
    libresh,
    new_user,
    ok,
    realm_admin,
    sign_in,
)

__all__ = ["connected"]  # test_identity's fixture, used here as it is

SETTINGS = {"synapse": ["--set", "server_name=example.test"]}
# Two of the seven wired apps (about 20 s each here): the client is made the same way for all
# (tests/unit/test_oidc_apps.py checks each app's paths and variables). Paperless: a callback
# with a trailing slash, the secret put in by $(VAR) expansion; Synapse: the secret as a file
# of a volume of libresh-oidc.
WIRED = ["paperless", "synapse"]


@pytest.fixture(scope="module")
def member(lab: Lab, connected: Keycloak) -> Iterator[dict[str, str]]:
    """A user of the group members: name and present password (the temporary one until the
    first sign-in replaces it, as sign_in does)."""
    name = f"m{uuid.uuid4().hex[:6]}"
    found = {"name": name, "password": new_user(lab, name, "members")}
    yield found
    libresh(lab, "users", "remove", name, "--yes")


@pytest.mark.parametrize("app", WIRED)
def test_the_app_gets_its_client_and_a_member_signs_in_through_its_callback(
    lab: Lab, connected: Keycloak, member: dict[str, str], app: str
) -> None:
    name = f"{app[:6]}{uuid.uuid4().hex[:6]}"
    domain = f"{name}.example.test"
    install = ["install", app, "--name", name, "--domain", domain, *SETTINGS.get(app, [])]
    ok(libresh(lab, *install, "--set", "single_sign_on=true", "--yes"))
    try:
        oidc = load_app(builtin_catalog() / app).oidc
        assert oidc is not None
        expected = [f"https://{domain}{path}" for path in oidc.redirect_paths]
        with realm_admin(connected) as admin:
            (client,) = admin.get("/clients", clientId=name)
        assert client["redirectUris"] == expected
        connection = connection_secret(lab, name)
        assert connection["client_id"] == name
        with lab.kube() as kube:
            deployment = kube.get("apps/v1", "Deployment", app, name)
        assert deployment is not None and "libresh-oidc" in str(deployment["spec"])

        user = member["name"]
        answer = sign_in(connected, connection, user, member["password"], expected[0])
        if not member["password"].startswith("Chosen-"):
            member["password"] = f"Chosen-{member['password']}"  # replaced at the first one
        claims = exchange_code(connection, answer, expected[0])
        assert claims["preferred_username"] == user and claims["groups"] == ["members"]
        assert claims.get("email") == f"{user}@example.org"  # GoToSocial needs it
    finally:
        ok(libresh(lab, "uninstall", name, "--purge-data", "--yes"))
    with realm_admin(connected) as admin:
        assert admin.get("/clients", clientId=name) == []
