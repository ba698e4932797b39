"""The embedded PostgreSQL's first-start script (postgres-embedded-init.sh), run against a real
PostgreSQL server as the postgres image runs it: with its temporary server up, after it
created POSTGRES_DB owned by the superuser POSTGRES_USER, the script sourced by the
entrypoint's shell (docker-library/postgres docker-entrypoint.sh: docker_setup_db,
docker_process_init_files). Then Nextcloud's installer's own check (nextcloud/server
lib/private/Setup/PostgreSQL.php) must find a role it uses as it is."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest

from libresh_cli.apps.render import EMBEDDED_INIT_SCRIPT
from tests.integration.postgres import Postgres, running_postgres

PASSWORD = 'it\'s "quoted"; $x'  # quoting must survive the shell and SQL


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with running_postgres() as server:
        yield server


def first_start(server: Postgres, database: str, app_user: str) -> subprocess.CompletedProcess[str]:
    """What the image does at its first start, from POSTGRES_DB on (the superuser exists)."""
    server.admin_sql(f'CREATE DATABASE "{database}"')  # docker_setup_db: owned by POSTGRES_USER
    return run_init_script(server, database, app_user, PASSWORD)


def run_init_script(
    server: Postgres, database: str, app_user: str, password: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **server.admin_env(),
        "POSTGRES_USER": "postgres",
        "POSTGRES_DB": database,
        "APP_USER": app_user,
        "APP_PASSWORD": password,
    }
    # Sourced (a ConfigMap's file is not executable): `. script` in a POSIX shell.
    return subprocess.run(
        ["sh", "-c", f'set -e; . "{EMBEDDED_INIT_SCRIPT}"'],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def logs_in(server: Postgres, database: str, password: str) -> bool:
    done = subprocess.run(
        [str(server.bindir / "psql"), "--no-psqlrc", "-tA", "-c", "SELECT 1"],
        env={**server.tcp_env(database, password), "PGDATABASE": database},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return done.returncode == 0


def test_the_app_gets_a_role_that_owns_its_database_and_cannot_create_roles(
    postgres: Postgres,
) -> None:
    database = f"nc_{uuid.uuid4().hex[:6]}"
    done = first_start(postgres, database, database)
    assert done.returncode == 0, done.stderr
    flags = postgres.admin_sql(
        f"SELECT rolsuper, rolcreaterole, rolcreatedb, rolcanlogin FROM pg_roles "
        f"WHERE rolname = '{database}'"
    ).strip()
    assert flags == "f|f|f|t"
    owner = postgres.admin_sql(
        f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{database}'"
    ).strip()
    assert owner == database
    # The installer's check: roles with CREATEROLE named like the user. None: no oc_admin.
    check = postgres.admin_sql(
        f"SELECT rolname FROM pg_roles WHERE rolcreaterole = TRUE AND rolname = '{database}'"
    )
    assert check.strip() == ""
    # The role logs in with its password over TCP and makes the installer's tables, which it
    # then owns (so a restore made as this role gives back exactly what it had).
    created = subprocess.run(
        [str(postgres.bindir / "psql"), "--no-psqlrc", "-tA", "-v", "ON_ERROR_STOP=1"],
        input="CREATE TABLE oc_appconfig (appid text); INSERT INTO oc_appconfig VALUES ('core');"
        " SELECT tableowner FROM pg_tables WHERE tablename = 'oc_appconfig';",
        env={**postgres.tcp_env(database, PASSWORD), "PGDATABASE": database},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.split()[-1] == database
    # Other roles may not even connect.
    other = f"other_{uuid.uuid4().hex[:6]}"
    postgres.admin_sql(f'CREATE ROLE "{other}" LOGIN')
    may_connect = postgres.admin_sql(
        f"SELECT has_database_privilege('{other}', '{database}', 'CONNECT')"
    )
    assert may_connect.strip() == "f"


def test_running_it_again_changes_nothing_but_the_password(postgres: Postgres) -> None:
    database = f"nc_{uuid.uuid4().hex[:6]}"
    assert first_start(postgres, database, database).returncode == 0
    again = run_init_script(postgres, database, database, "a-new-password")
    assert again.returncode == 0, again.stderr
    count = postgres.admin_sql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{database}'")
    assert count.strip() == "1"
    owner = postgres.admin_sql(
        f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{database}'"
    )
    assert owner.strip() == database
    assert logs_in(postgres, database, "a-new-password")
    assert not logs_in(postgres, database, PASSWORD)
