"""One account for every app, against a real Keycloak (tests/integration/keycloak.py) and the
lab's real API server, through the `libresh` command as people and scripts run it."""

from __future__ import annotations

import base64
import html
import json
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from libresh_cli.apps.record import InstanceRecord
from libresh_cli.identity import oidc
from libresh_cli.identity.connection import STORE, ensure_group, names_optional
from libresh_cli.identity.directory import add_user, show_user
from libresh_cli.identity.keycloak import AdminLogin, KeycloakAdmin
from libresh_cli.kube.client import wait_for
from libresh_cli.kube.store import SYSTEM_NAMESPACE
from libresh_cli.lab.processes import free_ports
from libresh_cli.settings import Paths
from tests.integration.conftest import Lab
from tests.integration.keycloak import Database, Keycloak, running_keycloak
from tests.integration.postgres import running_postgres
from tests.integration.test_backup_runner import DB_PASSWORD, Site, create_database, run_runner

LIBRESH = str(Path(sys.executable).parent / "libresh")
TEST_CATALOG = Path(__file__).resolve().parents[1] / "fixtures" / "catalog"
# `wiki`, an app that requires oidc (redirect path /oauth/callback).
SSO_CATALOG = Path(__file__).resolve().parents[1] / "fixtures" / "sso-catalog"


def libresh(
    lab: Lab, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    catalogs = ["--catalog", str(SSO_CATALOG), "--catalog", str(TEST_CATALOG)]
    command = [LIBRESH, "--kubeconfig", str(lab.kubeconfig), *catalogs, *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env={**lab.cli_env(), "COLUMNS": "200", **(env or {})},
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result).stdout)


def password_file(tmp: Path, password: str) -> Path:
    path = tmp / "admin.pw"
    path.write_text(password + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def connected(
    lab: Lab, keycloak: Keycloak, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Keycloak]:
    """The lab's cluster uses the test Keycloak; forgotten again after the module."""
    pw = password_file(tmp_path_factory.mktemp("identity"), keycloak.admin_password)
    ok(
        libresh(
            lab, "identity", "connect", "--url", keycloak.url, "--admin-user",
            keycloak.admin_user, "--admin-password-file", str(pw),
        )
    )  # fmt: skip
    yield keycloak
    with lab.kube() as kube:
        kube.delete("v1", "ConfigMap", STORE.configmap, SYSTEM_NAMESPACE)
        kube.delete("v1", "Secret", str(STORE.secret), SYSTEM_NAMESPACE)


def realm_admin(server: Keycloak) -> KeycloakAdmin:
    """Keycloak read back independently of libresh's commands (the same adapter, no CLI)."""
    login = AdminLogin(server.url, server.admin_user, server.admin_password)
    return KeycloakAdmin(login, "libresh")


def test_connect_makes_the_realm_and_default_groups_and_status_says_so(
    lab: Lab, connected: Keycloak
) -> None:
    status = as_json(libresh(lab, "identity", "status", "-o", "json"))
    assert status["issuer"] == f"{connected.url}/realms/libresh"
    assert status["reachable"] is True and "problem" not in status
    assert "admin_password" not in json.dumps(status)
    groups = as_json(libresh(lab, "groups", "list", "-o", "json"))
    assert {"admins", "members"} <= {g["group"] for g in groups}
    with lab.kube() as kube:
        secret = kube.get("v1", "Secret", str(STORE.secret), SYSTEM_NAMESPACE)
    assert secret is not None and set(secret["data"]) == {"admin_password"}


def test_users_and_groups_from_the_command_line(lab: Lab, connected: Keycloak) -> None:
    ok(libresh(lab, "groups", "add", "editors"))
    added = as_json(
        libresh(lab, "users", "add", "grace", "--email", "grace@example.org", "-g", "editors",
                "-o", "json")
    )  # fmt: skip
    assert added["groups"] == ["editors"] and added["must_set_password"] is True
    assert len(added["temporary_password"]) >= 16
    ok(libresh(lab, "groups", "add-member", "admins", "grace"))
    shown = as_json(libresh(lab, "users", "show", "grace", "-o", "json"))
    assert shown["groups"] == ["admins", "editors"] and "temporary_password" not in shown
    listed = as_json(libresh(lab, "users", "list", "-o", "json"))
    assert "grace" in [u["username"] for u in listed]
    listed_groups = as_json(libresh(lab, "groups", "list", "-o", "json"))
    groups = {g["group"]: g["members"] for g in listed_groups}
    assert "grace" in groups["editors"] and "grace" in groups["admins"]

    again = as_json(libresh(lab, "users", "passwd", "grace", "--yes", "-o", "json"))
    assert again["temporary_password"] != added["temporary_password"]
    ok(libresh(lab, "groups", "remove-member", "editors", "grace", "--yes"))
    ok(libresh(lab, "groups", "remove", "editors", "--yes"))
    ok(libresh(lab, "users", "remove", "grace", "--yes"))
    with realm_admin(connected) as admin:
        assert admin.get("/users", username="grace", exact="true") == []
        assert admin.get("/groups", search="editors", exact="true") == []


def test_a_removal_without_a_terminal_needs_yes(lab: Lab, connected: Keycloak) -> None:
    ok(libresh(lab, "users", "add", "henry", "--email", "henry@example.org"))
    refused = libresh(lab, "users", "remove", "henry")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert as_json(libresh(lab, "users", "show", "henry", "-o", "json"))["username"] == "henry"
    ok(libresh(lab, "users", "remove", "henry", "--yes"))


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("users", "show", "nobody"), 4, "No user 'nobody'"),
        (("users", "remove", "nobody", "--yes"), 4, "No user 'nobody'"),
        (("users", "add", "ivy", "--email", "not-an-email"), 2, "--email 'not-an-email'"),
        (("users", "add", "Ivy!", "--email", "ivy@example.org"), 2, "User name 'Ivy!'"),
        (("users", "add", "ivy", "--email", "ivy@example.org", "-g", "nope"), 4, "No group 'nope'"),
        (("groups", "remove", "members", "--yes"), 2, "default groups"),
        (("groups", "add-member", "admins", "nobody"), 4, "No user 'nobody'"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else str(v),
)
def test_bad_input_is_refused_clearly_and_changes_nothing(
    lab: Lab, connected: Keycloak, args: tuple[str, ...], code: int, words: str
) -> None:
    before = as_json(libresh(lab, "users", "list", "-o", "json"))
    result = libresh(lab, *args)
    assert result.returncode == code, result.stdout + result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr
    assert as_json(libresh(lab, "users", "list", "-o", "json")) == before


def test_a_duplicate_user_is_a_conflict(lab: Lab, connected: Keycloak) -> None:
    ok(libresh(lab, "users", "add", "jack", "--email", "jack@example.org"))
    try:
        again = libresh(lab, "users", "add", "jack", "--email", "other@example.org")
        assert again.returncode == 5 and "already exists" in again.stderr
        same_email = libresh(lab, "users", "add", "jill", "--email", "jack@example.org")
        assert same_email.returncode == 5 and "jack@example.org" in same_email.stderr
        shown = as_json(libresh(lab, "users", "show", "jack", "-o", "json"))
        assert shown["email"] == "jack@example.org"
    finally:
        ok(libresh(lab, "users", "remove", "jack", "--yes"))


def test_connecting_to_nothing_or_with_a_wrong_password_changes_nothing(
    lab: Lab, connected: Keycloak, tmp_path: Path
) -> None:
    (closed,) = free_ports(1)
    good = password_file(tmp_path, connected.admin_password)
    unreachable = libresh(
        lab, "identity", "connect", "--url", f"http://127.0.0.1:{closed}", "--admin-user",
        "admin", "--admin-password-file", str(good),
    )  # fmt: skip
    assert unreachable.returncode == 3 and "unreachable" in unreachable.stderr
    wrong = password_file(tmp_path, "not-the-password")
    refused = libresh(
        lab, "identity", "connect", "--url", connected.url, "--admin-user", "admin",
        "--admin-password-file", str(wrong),
    )  # fmt: skip
    assert refused.returncode == 2 and "refused the admin login" in refused.stderr
    assert "not-the-password" not in refused.stdout + refused.stderr
    status = as_json(libresh(lab, "identity", "status", "-o", "json"))
    assert status["url"] == connected.url and status["reachable"] is True


# -- apps that sign in with the provider ---------------------------------------------------


class Browser:
    """What a person's browser does on Keycloak's pages, with httpx: follows the provider's
    own redirects, fills its forms, and stops at the app's redirect URI.

    Keycloak marks its cookies Secure, and this server is plain HTTP on 127.0.0.1, where an
    RFC 6265 client would not send them back: the browser keeps and sends them itself."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.cookies: dict[str, str] = {}
        self.http = httpx.Client(timeout=30.0)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = self.http.request(method, url, headers={"Cookie": cookie}, **kwargs)
        self.cookies.update(dict(response.cookies.items()))
        location = response.headers.get("location", "")
        if response.status_code in (302, 303) and location.startswith(self.provider):
            return self.request("GET", location)
        return response

    def submit(self, page: httpx.Response, fields: dict[str, str]) -> httpx.Response:
        match = re.search(r'<form[^>]*action="([^"]+)"', page.text)
        assert match, page.text[:2000]
        return self.request("POST", html.unescape(match.group(1)), data=fields)


def sign_in(
    server: Keycloak, connection: dict[str, str], username: str, password: str, redirect: str
) -> httpx.Response:
    """An authorization-code sign-in up to the provider's last answer: a redirect to the
    app with a code, or a page (refused). A temporary password is replaced on the way."""
    browser = Browser(server.url)
    login_page = browser.request(
        "GET",
        f"{connection['issuer']}/protocol/openid-connect/auth",
        params={
            "client_id": connection["client_id"],
            "response_type": "code",
            "redirect_uri": redirect,
            "scope": connection["scopes"],
            "state": "state-1",
        },
    )
    assert login_page.status_code == 200, login_page.text[:500]
    answer = browser.submit(login_page, {"username": username, "password": password})
    if answer.status_code == 200 and 'name="password-new"' in answer.text:
        chosen = f"Chosen-{password}"
        answer = browser.submit(answer, {"password-new": chosen, "password-confirm": chosen})
    return answer


def exchange_code(connection: dict[str, str], answer: httpx.Response, redirect: str) -> Any:
    """The app's side: the code from the redirect, exchanged with the client secret; the ID
    token's claims."""
    assert answer.status_code == 302, answer.text[:500]
    location = answer.headers["location"]
    assert location.startswith(redirect + "?")
    code = httpx.URL(location).params["code"]
    tokens = httpx.post(
        f"{connection['issuer']}/protocol/openid-connect/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect,
            "client_id": connection["client_id"],
            "client_secret": connection["client_secret"],
        },
        timeout=30.0,
    )
    assert tokens.status_code == 200, tokens.text
    payload = tokens.json()["id_token"].split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def connection_secret(lab: Lab, namespace: str) -> dict[str, str]:
    with lab.kube() as kube:
        found = kube.get("v1", "Secret", "libresh-oidc", namespace)
    assert found is not None, f"no libresh-oidc in {namespace}"
    return {k: base64.b64decode(v).decode() for k, v in found["data"].items()}


def new_user(lab: Lab, name: str, *groups: str) -> str:
    """A user made by libresh; their temporary password."""
    options = [option for group in groups for option in ("--group", group)]
    email = f"{name}@example.org"
    added = as_json(libresh(lab, "users", "add", name, "--email", email, *options, "-o", "json"))
    return str(added["temporary_password"])


def test_an_app_signs_in_only_the_allowed_groups_through_the_provider(
    lab: Lab, connected: Keycloak
) -> None:
    ok(libresh(lab, "groups", "add", "guests"))
    ada = new_user(lab, "ada", "members")
    eve = new_user(lab, "eve", "guests")
    redirect = "https://wiki.example.test/oauth/callback"
    ok(libresh(lab, "install", "wiki", "--domain", "wiki.example.test", "--yes"))
    try:
        connection = connection_secret(lab, "wiki")
        assert sorted(connection) == sorted(
            ["issuer", "discovery_url", "client_id", "client_secret", "scopes", "groups_claim"]
        )
        assert connection["issuer"] == f"{connected.url}/realms/libresh"
        assert connection["client_id"] == "wiki" and connection["client_secret"]

        claims = exchange_code(connection, sign_in(connected, connection, "ada", ada, redirect),
                               redirect)  # fmt: skip
        assert claims["preferred_username"] == "ada" and claims["groups"] == ["members"]
        assert claims["aud"] == "wiki" and claims["iss"] == connection["issuer"]
        refused = sign_in(connected, connection, "eve", eve, redirect)
        assert refused.status_code != 302 and "code=" not in refused.headers.get("location", "")

        # Re-running install changes nothing, here or at the provider.
        with realm_admin(connected) as admin:
            client_before = admin.get("/clients", clientId="wiki")
            again = ok(libresh(lab, "install", "wiki", "--yes"))
            assert "up to date: nothing to do" in again.stderr
            assert admin.get("/clients", clientId="wiki") == client_before
        assert connection_secret(lab, "wiki") == connection

        # The app's setting: who may sign in. Now guests only.
        ok(libresh(lab, "install", "wiki", "--set", "allowed_groups=guests", "--yes"))
        claims = exchange_code(connection, sign_in(connected, connection, "eve", eve, redirect),
                               redirect)  # fmt: skip
        assert claims["groups"] == ["guests"]
        assert sign_in(connected, connection, "ada", ada, redirect).status_code != 302

        with lab.kube() as kube:
            pods_before = {p["metadata"]["uid"] for p in kube.list("v1", "Pod", "wiki")}
        rotation = as_json(libresh(lab, "identity", "rotate-secret", "wiki", "--yes", "-o", "json"))
        assert rotation["restarted"] == ["wiki"]
        with lab.kube() as kube:  # the app's pod is replaced: the new one reads the new secret
            assert pods_before
            wait_for(
                "the wiki's pod to be replaced",
                lambda: (
                    not pods_before & {p["metadata"]["uid"] for p in kube.list("v1", "Pod", "wiki")}
                    or None
                ),
                timeout=60,
            )
        rotated = connection_secret(lab, "wiki")
        assert rotated["client_secret"] != connection["client_secret"]
        with realm_admin(connected) as admin:
            uuid = admin.get("/clients", clientId="wiki")[0]["id"]
            assert admin.get(f"/clients/{uuid}/client-secret")["value"] == rotated["client_secret"]
    finally:
        ok(libresh(lab, "uninstall", "wiki", "--purge-data", "--yes"))
        for user in ("ada", "eve"):
            libresh(lab, "users", "remove", user, "--yes")
        libresh(lab, "groups", "remove", "guests", "--yes")
    with realm_admin(connected) as admin:
        assert admin.get("/clients", clientId="wiki") == []
        assert not [f for f in admin.get("/authentication/flows") if "wiki" in f["alias"]]


def test_an_install_the_provider_cannot_serve_is_refused_before_any_change(
    lab: Lab, connected: Keycloak
) -> None:
    unknown_group = libresh(
        lab, "install", "wiki", "--name", "wiki2", "--domain", "wiki2.example.test",
        "--set", "allowed_groups=nobody-here", "--yes",
    )  # fmt: skip
    assert unknown_group.returncode == 2, unknown_group.stderr
    assert "nobody-here do not exist" in unknown_group.stderr
    with lab.kube() as kube:
        assert kube.get("v1", "Namespace", "wiki2") is None
        document, secrets = STORE.read(kube)
        kube.delete("v1", "ConfigMap", STORE.configmap, SYSTEM_NAMESPACE)
        try:
            no_provider = libresh(
                lab, "install", "wiki", "--name", "wiki2", "--domain", "wiki2.example.test", "--yes"
            )
            assert no_provider.returncode == 6, no_provider.stderr
            assert "No identity provider is connected" in no_provider.stderr
            assert "libresh identity enable" in no_provider.stderr
            assert kube.get("v1", "Namespace", "wiki2") is None
            (closed,) = free_ports(1)
            STORE.write(kube, {**document, "url": f"http://127.0.0.1:{closed}"}, secrets)
            down = libresh(
                lab, "install", "wiki", "--name", "wiki2", "--domain", "wiki2.example.test", "--yes"
            )
            assert down.returncode == 3, down.stderr
            assert f"Keycloak at http://127.0.0.1:{closed} is unreachable" in down.stderr
            assert kube.get("v1", "Namespace", "wiki2") is None
        finally:
            STORE.write(kube, document, secrets)
    with realm_admin(connected) as admin:
        assert admin.get("/clients", clientId="wiki2") == []


def test_rotating_the_secret_of_an_app_without_single_sign_on_is_refused(
    lab: Lab, connected: Keycloak
) -> None:
    result = libresh(lab, "identity", "rotate-secret", "no-such-instance", "--yes")
    assert result.returncode == 4 and "Traceback" not in result.stderr


def test_enable_installs_keycloak_from_the_catalog_and_connects_to_it(
    lab: Lab, connected: Keycloak
) -> None:
    """The lab's pods are simulated, so the installed Keycloak never answers: enable installs
    it (plan, objects, health as for any app), then says the new provider is unreachable and
    keeps the one connected before."""
    ok(libresh(lab, "identity", "enable", "--domain", "id.example.test", "--dry-run"))
    with lab.kube() as kube:
        assert kube.get("v1", "Namespace", "keycloak") is None
    result = libresh(lab, "identity", "enable", "--domain", "id.example.test", "--yes")
    try:
        assert result.returncode == 3, result.stdout + result.stderr
        assert "https://id.example.test is unreachable" in result.stderr
        with lab.kube() as kube:
            deployment = kube.get("apps/v1", "Deployment", "keycloak", "keycloak")
            env = {
                e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            }
            assert env["KC_HOSTNAME"]["value"] == "https://id.example.test"
            assert env["KC_DB_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "libresh-postgres"
        status = as_json(libresh(lab, "identity", "status", "-o", "json"))
        assert status["url"] == connected.url
    finally:
        ok(libresh(lab, "uninstall", "keycloak", "--purge-data", "--yes"))


# -- the provider's data in backups ----------------------------------------------------------


def keycloak_site(root: Path, server: Any) -> Site:
    """What a backup Job of the keycloak app sees: its database's uri and its record."""
    (root / "databases" / "postgres").mkdir(parents=True)
    uri = f"postgresql://keycloak:{quote(DB_PASSWORD, safe='')}@127.0.0.1:{server.port}/keycloak"
    (root / "databases" / "postgres" / "uri").write_text(uri + "?sslmode=disable")
    (root / "meta" / "record").mkdir(parents=True)
    record = InstanceRecord("keycloak", "keycloak", "26.7.3", {"domain": "id.example.org"}, [], [])
    (root / "meta" / "record" / "record.json").write_text(
        record.to_configmap()["data"]["record.json"]
    )
    site = Site(root, "keycloak", server)
    site.files.mkdir(parents=True)
    return site


@contextmanager
def keycloak_on(database: Database, admin_password: str) -> Iterator[KeycloakAdmin]:
    paths = Paths.from_env()
    with running_keycloak(paths, database, admin_password) as server, realm_admin(server) as admin:
        yield admin


def test_users_survive_a_backup_and_restore_of_the_providers_database(tmp_path: Path) -> None:
    """Keycloak on a real PostgreSQL; its database backed up and restored by libresh's backup
    runner (bootstrap/backup-runner.sh), as `backup.databases: [postgres]` of apps/keycloak
    asks: after the database is lost, the user is back, with their groups."""
    password_file = tmp_path / "repo-password"
    password_file.write_text("correct horse battery staple")
    repository = {"RESTIC_REPOSITORY": str(tmp_path / "repo"),
                  "RESTIC_PASSWORD_FILE": str(password_file)}  # fmt: skip
    admin_password = secrets.token_urlsafe(18)
    with running_postgres() as server:
        create_database(server, "keycloak")
        database = Database("127.0.0.1", server.port, "keycloak", "keycloak", DB_PASSWORD)
        site = keycloak_site(tmp_path / "site", server)
        with keycloak_on(database, admin_password) as admin:
            admin.ensure_realm()
            names_optional(admin)
            ensure_group(admin, "members")
            add_user(admin, "ada", "ada@example.org", ["members"])
        assert run_runner(site, repository, "init").returncode == 0
        backup = run_runner(site, repository, "backup", LIBRESH_VOLUMES="", LIBRESH_BACKUP_ID="b1")
        assert backup.returncode == 0, backup.stderr
        # Everything Keycloak keeps is lost (its role owns all of it): realms, users, groups.
        site.sql("DROP OWNED BY keycloak")
        assert site.sql("SELECT count(*) FROM pg_tables WHERE tableowner = 'keycloak'") == "0"
        restore = run_runner(site, repository, "restore", LIBRESH_VOLUMES="")
        assert restore.returncode == 0, restore.stderr
        with keycloak_on(database, admin_password) as admin:
            ada = show_user(admin, "ada")
        assert ada.email == "ada@example.org" and ada.groups == ("members",)


def test_a_sign_in_flow_left_unfinished_is_made_again(connected: Keycloak) -> None:
    """A run stopped while it built a client's flow leaves a flow without its deny step: the
    next install must not bind it as it is (everyone would get in)."""
    spec = oidc.ClientSpec(
        "half", "https://half.example.test", ("/cb",), ("openid",), "groups", ("admins",)
    )
    with realm_admin(connected) as admin:
        admin.create(
            "/authentication/flows",
            {"alias": spec.flow_alias, "providerId": "basic-flow", "topLevel": True},
            "a flow",
        )
        try:
            oidc.ensure_client(admin, spec)
            steps = admin.get(f"/authentication/flows/{spec.flow_alias}/executions")
            assert "deny-access-authenticator" in [s.get("providerId") for s in steps]
            assert len(steps) == len(oidc.FLOW_STEPS)
        finally:
            oidc.remove_client(admin, "half")
