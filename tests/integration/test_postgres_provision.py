"""The external-postgres provisioning script, run against a real PostgreSQL server exactly as
the provisioning Job runs it (sh + psql, inputs in the environment)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from libresh_cli.apps.render import PROVISION_SCRIPT
from tests.integration.postgres import Postgres, running_postgres


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with running_postgres() as server:
        yield server


def provision(server: Postgres, database: str, password: str) -> subprocess.CompletedProcess[str]:
    env = {
        **server.admin_env(),
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


def test_provisioning_creates_a_private_database_and_is_idempotent(postgres: Postgres) -> None:
    password = 'it\'s a "quoted" secret;'  # quoting must survive SQL and the shell
    for _ in range(2):
        done = provision(postgres, "libresh_office", password)
        assert done.returncode == 0, done.stderr
        assert "role and database libresh_office are ready" in done.stdout
    app = postgres.psql_tcp(
        "libresh_office",
        password,
        "libresh_office",
        "CREATE TABLE t (x int); INSERT INTO t VALUES (42); SELECT x FROM t;",
    )
    assert app.returncode == 0, app.stderr
    assert app.stdout.strip().splitlines()[-1] == "42"
    owner = postgres.psql_tcp(
        "libresh_office",
        password,
        "libresh_office",
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database();",
    )
    assert owner.stdout.strip() == "libresh_office"


def test_a_new_password_replaces_the_old_one(postgres: Postgres) -> None:
    assert provision(postgres, "libresh_cloud", "first-password").returncode == 0
    assert provision(postgres, "libresh_cloud", "second-password").returncode == 0
    refused = postgres.psql_tcp("libresh_cloud", "first-password", "libresh_cloud", "SELECT 1")
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr
    accepted = postgres.psql_tcp("libresh_cloud", "second-password", "libresh_cloud", "SELECT 1")
    assert accepted.returncode == 0, accepted.stderr


def test_other_instances_cannot_reach_the_database(postgres: Postgres) -> None:
    assert provision(postgres, "libresh_a", "pw-a").returncode == 0
    assert provision(postgres, "libresh_b", "pw-b").returncode == 0
    crossing = postgres.psql_tcp("libresh_b", "pw-b", "libresh_a", "SELECT 1")
    assert crossing.returncode != 0 and "permission denied" in crossing.stderr


def test_missing_inputs_are_refused(postgres: Postgres) -> None:
    done = provision(postgres, "", "x")
    assert done.returncode != 0 and "APP_DATABASE" in done.stderr


def test_the_script_is_shipped_in_the_package() -> None:
    assert Path(PROVISION_SCRIPT).read_text().startswith("#!/bin/sh")
