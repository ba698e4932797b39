"""One account for every app, against a real Keycloak (tests/integration/keycloak.py) and the
lab's real API server, through the `libresh` command as people and scripts run it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libresh_cli.identity.connection import STORE
from libresh_cli.identity.keycloak import AdminLogin, KeycloakAdmin
from libresh_cli.kube.store import SYSTEM_NAMESPACE
from libresh_cli.lab.processes import free_ports
from libresh_cli.settings import Paths
from tests.integration.conftest import Lab
from tests.integration.keycloak import Keycloak, running_keycloak

LIBRESH = str(Path(sys.executable).parent / "libresh")
TEST_CATALOG = Path(__file__).resolve().parents[1] / "fixtures" / "catalog"


@pytest.fixture(scope="session")
def keycloak(request: pytest.FixtureRequest) -> Iterator[Keycloak]:
    """One Keycloak for the whole session (its start is most of these tests' time)."""
    with running_keycloak(Paths.from_env()) as server:
        writer = request.config.get_terminal_writer()
        writer.line(
            f"[keycloak] ready in {server.started_in:.0f} s, RSS "
            f"{server.rss_bytes() / 2**20:.0f} MiB"
        )
        yield server


def libresh(
    lab: Lab, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [LIBRESH, "--kubeconfig", str(lab.kubeconfig), "--catalog", str(TEST_CATALOG), *args]
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
