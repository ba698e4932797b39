"""`requires: {postgres: {locale: C}}` on the external provider: the provisioning script, run
against a real PostgreSQL as the Job runs it, makes the database with that collation and
ctype from template0 (Synapse refuses any other), and leaves an existing database alone."""

from __future__ import annotations

import subprocess

from libresh_cli.apps.render import PROVISION_SCRIPT
from tests.integration.postgres import running_postgres


def provision(admin_env: dict[str, str], database: str, locale: str | None) -> None:
    env = {**admin_env, "APP_DATABASE": database, "APP_USER": database, "APP_PASSWORD": "pw-1"}
    if locale is not None:
        env["APP_LOCALE"] = locale
    done = subprocess.run(
        ["sh", str(PROVISION_SCRIPT)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_the_database_gets_the_locale_the_app_asks_for() -> None:
    with running_postgres() as server:
        # A server whose default locale is not C, as most are (a distribution's initdb takes
        # the system's): template1, which a database made without the option copies, in
        # C.UTF-8.
        server.admin_sql("ALTER DATABASE template1 IS_TEMPLATE false")
        server.admin_sql("DROP DATABASE template1")
        server.admin_sql(
            "CREATE DATABASE template1 TEMPLATE template0 ENCODING 'UTF8'"
            " LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' IS_TEMPLATE true"
        )
        admin = server.admin_env()
        provision(admin, "libresh_chat", "C")
        provision(admin, "libresh_chat", "C")  # again: nothing to do
        provision(admin, "libresh_notes", None)
        rows = server.admin_sql(
            "SELECT datname, datcollate, datctype, pg_encoding_to_char(encoding)"
            " FROM pg_database WHERE datname LIKE 'libresh_%' ORDER BY datname"
        ).splitlines()
        assert rows == ["libresh_chat|C|C|UTF8", "libresh_notes|C.UTF-8|C.UTF-8|UTF8"]
