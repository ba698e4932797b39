"""OIDC clients for app instances: one confidential client per instance, made and kept as
wanted by every install (idempotent), removed by uninstall, its secret rotated on demand.

Who may sign in is decided by the provider, not by each app: the client has a role
`access`, granted to the allowed groups, and its own browser flow (bound to the client as a
flow override) ends with a conditional step that denies anyone without that role. Keycloak
facts relied on ("Server Administration Guide", "Authentication flows" and "Client
authentication flow overrides"; services/src/main/java/org/keycloak/authentication/
authenticators/conditional/ConditionalRoleAuthenticatorFactory.java):
- provider ids: `auth-cookie`, `auth-username-password-form`, `conditional-user-role`
  (config `condUserRole` = "CLIENT_ID.ROLE" for a client role, `negate` = "true"),
  `deny-access-authenticator`; generic sub-flows are `basic-flow`;
- a CONDITIONAL sub-flow runs its steps only when its conditions hold;
- deleting a top-level flow deletes its sub-flows; deleting a client deletes its roles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from libresh_cli.errors import BadInputError, NotFoundError
from libresh_cli.identity.connection import group_id
from libresh_cli.identity.keycloak import KeycloakAdmin

ACCESS_ROLE = "access"
GROUPS_MAPPER = "groups"
# The connection Secret's keys (apps/README.md, "Single sign-on").
CONNECTION_KEYS = (
    "issuer",
    "discovery_url",
    "client_id",
    "client_secret",
    "scopes",
    "groups_claim",
)


@dataclass(frozen=True)
class ClientSpec:
    client_id: str  # the instance's name: unique in the cluster
    base_url: str  # https://DOMAIN of the instance
    redirect_paths: tuple[str, ...]
    scopes: tuple[str, ...]
    groups_claim: str
    allowed_groups: tuple[str, ...]

    @property
    def flow_alias(self) -> str:
        return f"libresh-{self.client_id}"

    @property
    def redirect_uris(self) -> list[str]:
        return [f"{self.base_url}{path}" for path in self.redirect_paths]


def ensure_client(admin: KeycloakAdmin, spec: ClientSpec) -> dict[str, str]:
    """Makes the client as wanted (only what differs is changed); its connection values."""
    groups = check_allowed_groups(admin, spec.allowed_groups)  # before any change
    flow_id = _ensure_flow(admin, spec)
    wanted = _client_representation(spec, flow_id)
    found = find_client(admin, spec.client_id)
    if found is None:
        admin.create("/clients", wanted, f"the OIDC client {spec.client_id}")
        found = _require_client(admin, spec.client_id)
    elif any(found.get(k) != v for k, v in wanted.items()):
        admin.put(f"/clients/{found['id']}", {**found, **wanted}, "update the OIDC client")
    uuid = str(found["id"])
    _ensure_groups_mapper(admin, uuid, spec.groups_claim)
    _ensure_access_role(admin, uuid, groups)
    return connection_values(admin, spec, client_secret(admin, uuid))


def connection_values(admin: KeycloakAdmin, spec: ClientSpec, secret: str) -> dict[str, str]:
    issuer = admin.issuer()
    return {
        "issuer": issuer,
        "discovery_url": f"{issuer}/.well-known/openid-configuration",
        "client_id": spec.client_id,
        "client_secret": secret,
        "scopes": " ".join(spec.scopes),
        "groups_claim": spec.groups_claim,
    }


def remove_client(admin: KeycloakAdmin, client_id: str) -> bool:
    """Deletes the client, then its flow; False when there was no client."""
    found = find_client(admin, client_id)
    removed = found is not None and admin.delete(f"/clients/{found['id']}", "the OIDC client")
    flow = _find_flow(admin, f"libresh-{client_id}")
    if flow is not None:
        admin.delete(f"/authentication/flows/{flow['id']}", "the client's sign-in flow")
    return removed


def rotate_secret(admin: KeycloakAdmin, client_id: str) -> str:
    """A new client secret (the old one stops working at once); returns it."""
    found = _require_client(admin, client_id)
    response = admin.post(f"/clients/{found['id']}/client-secret", None, "rotate the secret")
    return str(response.json()["value"])


def _require_client(admin: KeycloakAdmin, client_id: str) -> dict[str, Any]:
    found = find_client(admin, client_id)
    if found is None:
        raise NotFoundError(f"The identity provider has no OIDC client {client_id!r}.")
    return found


def find_client(admin: KeycloakAdmin, client_id: str) -> dict[str, Any] | None:
    found = admin.get("/clients", clientId=client_id)
    return next((c for c in found if c.get("clientId") == client_id), None)


def client_secret(admin: KeycloakAdmin, uuid: str) -> str:
    return str(admin.get(f"/clients/{uuid}/client-secret")["value"])


def check_allowed_groups(admin: KeycloakAdmin, names: tuple[str, ...]) -> dict[str, str]:
    ids = {name: group_id(admin, name) for name in names}
    missing = sorted(name for name, found in ids.items() if found is None)
    if missing:
        raise BadInputError(
            f"The allowed groups {', '.join(missing)} do not exist in the identity provider.",
            hint=f"Make them first (libresh groups add {missing[0]}), or allow other groups.",
        )
    return {name: str(found) for name, found in ids.items()}


def _client_representation(spec: ClientSpec, flow_id: str) -> dict[str, Any]:
    return {
        "clientId": spec.client_id,
        "name": spec.client_id,
        "protocol": "openid-connect",
        "enabled": True,
        "publicClient": False,
        "clientAuthenticatorType": "client-secret",
        "standardFlowEnabled": True,
        "implicitFlowEnabled": False,
        "directAccessGrantsEnabled": False,  # no password grant: sign-in goes through the flow
        "serviceAccountsEnabled": False,
        "rootUrl": spec.base_url,
        "baseUrl": spec.base_url,
        "redirectUris": spec.redirect_uris,
        "webOrigins": [spec.base_url],
        "authenticationFlowBindingOverrides": {"browser": flow_id},
    }


def _ensure_groups_mapper(admin: KeycloakAdmin, uuid: str, claim: str) -> None:
    wanted = {
        "name": GROUPS_MAPPER,
        "protocol": "openid-connect",
        "protocolMapper": "oidc-group-membership-mapper",
        "config": {
            "claim.name": claim,
            "full.path": "false",  # `admins`, not `/admins`
            "id.token.claim": "true",
            "access.token.claim": "true",
            "userinfo.token.claim": "true",
        },
    }
    mappers = admin.get(f"/clients/{uuid}/protocol-mappers/models")
    found = next((m for m in mappers if m.get("name") == GROUPS_MAPPER), None)
    path = f"/clients/{uuid}/protocol-mappers/models"
    if found is None:
        admin.create(path, wanted, "the groups claim mapper")
    elif found.get("config") != wanted["config"]:
        admin.put(f"{path}/{found['id']}", {**found, **wanted}, "update the groups mapper")


def _ensure_access_role(admin: KeycloakAdmin, uuid: str, groups: dict[str, str]) -> None:
    """The client role `access`, granted to exactly the allowed groups."""
    role_path = f"/clients/{uuid}/roles/{ACCESS_ROLE}"
    role = admin.find(role_path)
    if role is None:
        admin.create(f"/clients/{uuid}/roles", {"name": ACCESS_ROLE}, "the access role")
        role = admin.get(role_path)
    holders = {str(g["id"]) for g in admin.get(f"{role_path}/groups", briefRepresentation="true")}
    mapping = [{"id": role["id"], "name": ACCESS_ROLE}]
    for group in set(groups.values()) - holders:
        admin.post(f"/groups/{group}/role-mappings/clients/{uuid}", mapping, "grant access")
    for group in holders - set(groups.values()):
        admin.delete(f"/groups/{group}/role-mappings/clients/{uuid}", "a grant", body=mapping)


# -- the sign-in flow --------------------------------------------------------------------

# (parent suffix, what, requirement): "" is the top-level flow; a `flow:` entry is a
# sub-flow named ALIAS-SUFFIX.
FLOW_STEPS = (
    ("", "flow:authenticate", "REQUIRED"),
    ("-authenticate", "auth-cookie", "ALTERNATIVE"),
    ("-authenticate", "flow:forms", "ALTERNATIVE"),
    ("-forms", "auth-username-password-form", "REQUIRED"),
    ("", "flow:access", "CONDITIONAL"),
    ("-access", "conditional-user-role", "REQUIRED"),
    ("-access", "deny-access-authenticator", "REQUIRED"),
)


def _find_flow(admin: KeycloakAdmin, alias: str) -> dict[str, Any] | None:
    return next((f for f in admin.get("/authentication/flows") if f.get("alias") == alias), None)


def _ensure_flow(admin: KeycloakAdmin, spec: ClientSpec) -> str:
    """The client's browser flow: sign in (cookie or form), then deny anyone without the
    client's `access` role. Made once; its id."""
    alias = spec.flow_alias
    found = _find_flow(admin, alias)
    if found is not None:
        steps = admin.get(f"/authentication/flows/{quote(alias)}/executions")
        if len(steps) == len(FLOW_STEPS):
            return str(found["id"])
        # A run stopped while it built the flow (before the client, which is made after it):
        # made again from the start.
        admin.delete(f"/authentication/flows/{found['id']}", f"the unfinished flow {alias}")
    flow_id = admin.create(
        "/authentication/flows",
        {
            "alias": alias,
            "description": f"Sign in to {spec.client_id}: only its allowed groups (libresh)",
            "providerId": "basic-flow",
            "topLevel": True,
            "builtIn": False,
        },
        f"the sign-in flow {alias}",
    )
    for parent, what, _ in FLOW_STEPS:
        path = f"/authentication/flows/{quote(alias + parent)}/executions"
        if what.startswith("flow:"):
            body = {"alias": f"{alias}-{what[5:]}", "type": "basic-flow", "description": ""}
            admin.post(f"{path}/flow", body, f"add a step to {alias}")
        else:
            admin.post(f"{path}/execution", {"provider": what}, f"add {what} to {alias}")
    _set_requirements(admin, alias, spec.client_id)
    return flow_id


def _set_requirements(admin: KeycloakAdmin, alias: str, client_id: str) -> None:
    wanted = {
        (what[5:] if what.startswith("flow:") else what): requirement
        for _, what, requirement in FLOW_STEPS
    }
    executions = admin.get(f"/authentication/flows/{quote(alias)}/executions")
    for execution in executions:
        key = (
            str(execution.get("displayName", "")).removeprefix(f"{alias}-")
            if execution.get("authenticationFlow")
            else str(execution.get("providerId"))
        )
        if key in wanted and execution.get("requirement") != wanted[key]:
            admin.put(
                f"/authentication/flows/{quote(alias)}/executions",
                {**execution, "requirement": wanted[key]},
                f"set {key} {wanted[key]}",
            )
        if key == "conditional-user-role":
            admin.post(
                f"/authentication/executions/{execution['id']}/config",
                {
                    "alias": f"{alias}-without-access",
                    "config": {"condUserRole": f"{client_id}.{ACCESS_ROLE}", "negate": "true"},
                },
                "configure the access condition",
            )
