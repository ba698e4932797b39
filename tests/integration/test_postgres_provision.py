"""The external-postgres provisioning script, run against a real PostgreSQL server exactly as
the provisioning Job runs it (sh + psql, inputs in the environment), by the two kinds of admin
it meets: a superuser (a server of one's own) and an admin with only CREATEROLE and CREATEDB
(managed servers: RDS, Cloud SQL, Scaleway, OVH...)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from libresh_cli.apps.render import PROVISION_SCRIPT
from tests.integration.postgres import Postgres, running_postgres

MANAGED_ADMIN = "managed_admin"
MANAGED_PASSWORD = "admin's password"


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with running_postgres() as server:
        # Exactly what a managed server hands out: not a superuser, may create roles and
        # databases, nothing else.
        server.admin_sql(
            f"CREATE ROLE {MANAGED_ADMIN} LOGIN CREATEROLE CREATEDB NOSUPERUSER"
            f" PASSWORD '{MANAGED_PASSWORD.replace(chr(39), chr(39) * 2)}'"
        )
        yield server


@pytest.fixture(params=["superuser", "createrole-createdb"])
def admin_env(request: pytest.FixtureRequest, postgres: Postgres) -> dict[str, str]:
    if request.param == "superuser":
        return postgres.admin_env()
    return postgres.tcp_env(MANAGED_ADMIN, MANAGED_PASSWORD)


def provision(
    admin_env: dict[str, str], database: str, password: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **admin_env,
        "APP_DATABASE": database,
        "APP_USER": database,
        "APP_PASSWORD": password,
    }
    return subprocess.run(
        ["sh", str(PROVISION_SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def unique(name: str, admin_env: dict[str, str]) -> str:
    """One database per admin kind: the module's server is shared."""
    return f"{name}_{'su' if admin_env['PGUSER'] == 'postgres' else 'managed'}"


def test_provisioning_creates_a_private_database_and_is_idempotent(
    postgres: Postgres, admin_env: dict[str, str]
) -> None:
    name = unique("libresh_office", admin_env)
    password = 'it\'s a "quoted" secret;'  # quoting must survive SQL and the shell
    for _ in range(2):
        done = provision(admin_env, name, password)
        assert done.returncode == 0, done.stderr
        assert f"role and database {name} are ready" in done.stdout
    app = postgres.psql_tcp(
        name, password, name, "CREATE TABLE t (x int); INSERT INTO t VALUES (42); SELECT x FROM t;"
    )
    assert app.returncode == 0, app.stderr
    assert app.stdout.strip().splitlines()[-1] == "42"
    facts = postgres.psql_tcp(
        name,
        password,
        name,
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database();"
        "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user;"
        "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 't';",
    )
    assert facts.returncode == 0, facts.stderr
    # The app's role owns its database and what it makes, and may do nothing beyond it.
    assert facts.stdout.split() == [name, "f|f|f", name]


def test_a_managed_admin_that_is_no_superuser_can_provision(postgres: Postgres) -> None:
    # PostgreSQL <= 15: CREATE DATABASE ... OWNER needs membership in the owner role;
    # 16+: being able to SET ROLE to it, which a role's CREATEROLE creator lacks (its implicit
    # grant is ADMIN only). Without the script's GRANT this fails with "must be member of
    # role" (<= 15) or "must be able to SET ROLE" (16+).
    admin = postgres.tcp_env(MANAGED_ADMIN, MANAGED_PASSWORD)
    is_superuser = "SELECT rolsuper FROM pg_roles WHERE rolname = 'managed_admin'"
    assert postgres.admin_sql(is_superuser).strip() == "f"
    done = provision(admin, "libresh_managed", "pw-managed")
    assert done.returncode == 0, done.stderr
    assert (
        postgres.admin_sql(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'libresh_managed'"
        ).strip()
        == "libresh_managed"
    )
    if postgres.major >= 16:
        # SET only: the admin does not inherit the app's privileges (its data).
        grants = postgres.admin_sql(
            "SELECT admin_option, inherit_option, set_option FROM pg_auth_members"
            " WHERE roleid = 'libresh_managed'::regrole"
            " AND member = 'managed_admin'::regrole ORDER BY 1"
        ).split()
        assert grants == ["f|f|t", "t|f|f"]
    # Nobody but the owner may connect, the admin's revoke took effect as the owner's.
    assert (
        postgres.admin_sql(
            "SELECT datacl::text FROM pg_database WHERE datname = 'libresh_managed'"
        ).strip()
        == "{libresh_managed=CTc/libresh_managed}"
    )


def test_a_new_password_replaces_the_old_one(postgres: Postgres, admin_env: dict[str, str]) -> None:
    name = unique("libresh_cloud", admin_env)
    assert provision(admin_env, name, "first-password").returncode == 0
    assert provision(admin_env, name, "second-password").returncode == 0
    refused = postgres.psql_tcp(name, "first-password", name, "SELECT 1")
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr
    accepted = postgres.psql_tcp(name, "second-password", name, "SELECT 1")
    assert accepted.returncode == 0, accepted.stderr


def test_other_instances_cannot_reach_the_database(
    postgres: Postgres, admin_env: dict[str, str]
) -> None:
    a, b = unique("libresh_a", admin_env), unique("libresh_b", admin_env)
    assert provision(admin_env, a, "pw-a").returncode == 0
    assert provision(admin_env, b, "pw-b").returncode == 0
    crossing = postgres.psql_tcp(b, "pw-b", a, "SELECT 1")
    assert crossing.returncode != 0 and "permission denied" in crossing.stderr


def test_no_password_is_on_psqls_command_line(
    postgres: Postgres, admin_env: dict[str, str], tmp_path: Path
) -> None:
    # argv is readable by every user of the node (/proc/PID/cmdline, ps); the environment only
    # by the process's owner and root. A psql on PATH that records its arguments.
    name = unique("libresh_argv", admin_env)
    password = "app-secret-on-no-command-line"
    arguments = tmp_path / "psql-arguments"
    wrapper = tmp_path / "bin" / "psql"
    wrapper.parent.mkdir()
    wrapper.write_text(
        f'#!/bin/sh\nprintf \'%s\\n\' "$@" >>"{arguments}"\nexec {postgres.bindir / "psql"} "$@"\n'
    )
    wrapper.chmod(0o755)
    env = {**admin_env, "PATH": f"{wrapper.parent}:{admin_env['PATH']}"}
    done = provision(env, name, password)
    assert done.returncode == 0, done.stderr
    recorded = arguments.read_text()
    assert "--dbname=postgres" in recorded
    assert password not in recorded
    if "PGPASSWORD" in admin_env:
        assert admin_env["PGPASSWORD"] not in recorded
    accepted = postgres.psql_tcp(name, password, name, "SELECT 1")
    assert accepted.returncode == 0, accepted.stderr


def test_missing_inputs_are_refused(admin_env: dict[str, str]) -> None:
    done = provision(admin_env, "", "x")
    assert done.returncode != 0 and "APP_DATABASE" in done.stderr


def test_the_script_is_shipped_in_the_package() -> None:
    assert Path(PROVISION_SCRIPT).read_text().startswith("#!/bin/sh")
