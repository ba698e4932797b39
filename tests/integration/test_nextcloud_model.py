"""The Nextcloud MODEL image's rules (libresh_cli/lab/images/nextcloud-model), run on this
machine: its entrypoint and occ with a temporary directory as the /var/www/html volume, PHP's
built-in server answering status.php, and a real PostgreSQL server. What each rule follows
upstream is in that folder's README.md.

"A model has teeth": besides the right sequences, the wrong ones issue 15 names must fail here
as they would with Nextcloud: an old image on a volume an upgrade left newer, a skipped major,
an upgrade made to fail, and a database restored as the superuser, which the app's own role
cannot read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from libresh_cli.lab import imagebuild
from libresh_cli.lab.processes import free_ports
from tests.integration.postgres import Postgres, running_postgres

MODEL = Path(imagebuild.load_recipe("nextcloud-model").folder)
ENTRYPOINT = MODEL / "docker-entrypoint.sh"
APP_YAML = Path(__file__).parents[2] / "apps" / "nextcloud" / "app.yaml"
OLD, NEXT, LAST = "29.0.16", "30.0.17", "31.0.14"
ROLE_PASSWORD = "model-role-pw"  # a throwaway test server's
ADMIN_PASSWORD = "model-admin-pw"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the model's entrypoint runs occ as www-data, as the image does"
)


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    with running_postgres() as server:
        yield server


@dataclass
class Instance:
    """An instance of the model: its volume and its database (owned by its role, which may not
    create roles: libresh's embedded PostgreSQL makes them so)."""

    pg: Postgres
    volume: Path
    role: str

    def env(self, version: str, **more: str) -> dict[str, str]:
        return {
            "PATH": os.environ["PATH"],
            "NEXTCLOUD_UPDATE": "1",
            "LIBRESH_MODEL_SOURCE": str(MODEL / "src"),
            "LIBRESH_MODEL_VOLUME": str(self.volume),
            "NEXTCLOUD_VERSION": version,
            "NEXTCLOUD_ADMIN_USER": "admin",
            "NEXTCLOUD_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "NEXTCLOUD_TRUSTED_DOMAINS": "cloud.example",
            "POSTGRES_DB": self.role,
            "POSTGRES_USER": self.role,
            "POSTGRES_PASSWORD": ROLE_PASSWORD,
            "POSTGRES_HOST": f"127.0.0.1:{self.pg.port}",
            "LIBRESH_MODEL_INSTALL_RETRY_SECONDS": "0",
            **more,
        }

    def start(self, version: str, **more: str) -> subprocess.CompletedProcess[str]:
        """The image of `version` starting on the volume (its init part, then `true`)."""
        return subprocess.run(
            ["sh", str(ENTRYPOINT), "true"],
            env=self.env(version, **more),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def occ(self, *args: str, user: str = "www-data") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runuser", "-u", user, "--", "php", str(self.volume / "occ"), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def status(self) -> dict[str, object]:
        done = self.occ("status", "--output=json")
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    def rows(self) -> list[str]:
        """The model's table, read with the role config.php names."""
        done = self.occ("libresh-model:rows")
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout.splitlines()

    def knob(self, majors: str | None) -> None:
        knob = self.volume / "data" / "libresh-model-fail-upgrade"
        if majors is None:
            knob.unlink(missing_ok=True)
        else:
            knob.write_text(majors + "\n")


def new_instance(pg: Postgres, name: str, create_role: str = "NOCREATEROLE") -> Instance:
    pg.admin_sql(
        f"CREATE ROLE {name} LOGIN {create_role} PASSWORD '{ROLE_PASSWORD}';"
        f"CREATE DATABASE {name} OWNER {name};"
    )
    # Not under pytest's tmp_path (private to root): www-data writes here.
    volume = Path(tempfile.mkdtemp(prefix=f"libresh-nc-model-{name}-"))
    shutil.chown(volume, "www-data", "www-data")
    return Instance(pg, volume, name)


@pytest.fixture
def instance(pg: Postgres, request: pytest.FixtureRequest) -> Iterator[Instance]:
    name = "nc_" + request.node.name.removeprefix("test_")[:40]
    made = new_instance(pg, name)
    yield made
    shutil.rmtree(made.volume, ignore_errors=True)


class WebServer:
    """status.php over HTTP, from PHP's built-in server as the image's apache2-foreground."""

    def __init__(self, volume: Path) -> None:
        (self.port,) = free_ports(1)
        self.process = subprocess.Popen(
            ["php", "-S", f"127.0.0.1:{self.port}", "-t", str(volume)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def status(self) -> tuple[int, dict[str, object] | None]:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/status.php") as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as error:
                return error.code, None
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def web(instance: Instance) -> Iterator[WebServer]:
    server = WebServer(instance.volume)
    yield server
    server.stop()


def table_owners(pg: Postgres, database: str) -> set[str]:
    sql = "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
    rows = pg.admin_sql(sql, database)
    return set(rows.split())


# --- the right sequences ---------------------------------------------------------------------


def test_first_start_installs_with_the_given_role_and_serves_status(
    instance: Instance, web: WebServer
) -> None:
    done = instance.start(OLD)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Installing with PostgreSQL database" in done.stdout
    assert "OC_Version" in (instance.volume / "version.php").read_text()
    code, status = web.status()
    assert code == 200
    assert status is not None
    assert {k: status[k] for k in ("installed", "maintenance", "needsDbUpgrade", "version")} == {
        "installed": True,
        "maintenance": False,
        "needsDbUpgrade": False,
        "version": f"{OLD}.1",
    }
    # The given role may not create roles: the installer uses it as it is, and its tables are
    # that role's.
    assert table_owners(instance.pg, instance.role) == {instance.role}
    assert [line.split("\t")[1:] for line in instance.rows()] == [["installed", f"{OLD}.1"]]
    assert instance.start(OLD).returncode == 0  # a restart: same versions, nothing to do
    assert len(instance.rows()) == 1


def test_a_role_that_may_create_roles_makes_oc_admin_and_installs_as_it(pg: Postgres) -> None:
    # Setup/PostgreSQL.php: the given user may create roles, so the installer makes oc_admin,
    # grants it the database, and oc_admin owns every table: a restore must keep that role.
    made = new_instance(pg, "boss", create_role="CREATEROLE")
    try:
        done = made.start(OLD)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "'dbuser' => 'oc_admin'" in (made.volume / "config" / "config.php").read_text()
        assert table_owners(pg, "boss") == {"oc_admin"}
        assert len(made.rows()) == 1
    finally:
        shutil.rmtree(made.volume, ignore_errors=True)


def test_upgrades_one_major_at_a_time_in_the_entrypoint(instance: Instance) -> None:
    assert instance.start(OLD).returncode == 0
    assert instance.occ("app:install", "richdocuments").returncode == 0
    done = instance.start(NEXT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Upgrading nextcloud from {OLD}.1" in done.stdout
    assert "Update successful" in done.stdout
    assert instance.status()["version"] == f"{NEXT}.1"
    assert instance.status()["maintenance"] is False
    assert instance.rows()[-1].split("\t")[1:] == [f"upgraded from {OLD}.1", f"{NEXT}.1"]
    assert instance.start(LAST).returncode == 0
    assert instance.status()["version"] == f"{LAST}.1"


def test_the_commands_libresh_hooks_run(instance: Instance) -> None:
    assert instance.start(OLD).returncode == 0
    for args, code in [
        (("maintenance:mode", "--on"), 0),
        (("maintenance:mode", "--on"), 0),  # "already enabled"
        (("db:add-missing-indices",), 0),
        (("maintenance:data-fingerprint",), 0),
        (("maintenance:mode", "--off"), 0),
        # office-link.sh: app:install exits 1 when the app is there, then app:enable.
        (("app:install", "richdocuments"), 0),
        (("app:install", "richdocuments"), 1),
        (("app:enable", "richdocuments"), 0),
        (("config:app:set", "richdocuments", "wopi_url", "--value=https://office.example"), 0),
        (("richdocuments:activate-config",), 0),
        (("config:app:delete", "richdocuments", "wopi_url"), 0),
        (("user_oidc:provider", "libresh", "--clientid=c", "--clientsecret-env=S"), 0),
        (("upgrade",), 0),  # already latest version
        (("no:such-command",), 1),
    ]:
        done = instance.occ(*args)
        assert done.returncode == code, (args, done.stdout, done.stderr)
    assert "richdocuments" in instance.occ("app:list").stdout
    config = (instance.volume / "config" / "config.php").read_text()
    assert "richdocuments:activate-config" in config
    assert "https://office.example" not in config  # a recorded value is not kept
    # Upgrade.php: up to date in maintenance mode exits 2 (why libresh's post_upgrade does
    # not run `occ upgrade` again).
    assert instance.occ("maintenance:mode", "--on").returncode == 0
    assert instance.occ("upgrade").returncode == 2


def test_libresh_db_config_hook_keeps_config_php_readable(instance: Instance) -> None:
    """The post_restore step db-config (apps/nextcloud/app.yaml) rewrites config.php with
    PHP; the model (as Nextcloud) must read what it wrote."""
    assert instance.start(OLD).returncode == 0
    hooks = yaml.safe_load(APP_YAML.read_text())["hooks"]["post_restore"]
    command = next(h["job"]["command"] for h in hooks if h["name"] == "db-config")
    script = command[2].replace("/var/www/html", str(instance.volume))
    env = {k: v for k, v in instance.env(OLD).items() if k.startswith(("POSTGRES_", "PATH"))}
    done = subprocess.run(
        ["runuser", "-u", "www-data", "--", "php", "-r", script], env=env, capture_output=True
    )
    assert done.returncode == 0, done
    assert instance.status()["installed"] is True
    assert len(instance.rows()) == 1


# --- the wrong sequences (teeth) -------------------------------------------------------------


def test_the_old_image_refuses_a_volume_an_upgrade_left_newer(instance: Instance) -> None:
    """A rollback that puts the old image back without restoring the volume."""
    assert instance.start(OLD).returncode == 0
    assert instance.start(NEXT).returncode == 0
    done = instance.start(OLD)
    assert done.returncode == 1
    assert (
        f"the version of the data ({NEXT}.1) is higher than the docker image version ({OLD}.1)"
        in done.stdout
    )


def test_skipping_a_major_is_refused(instance: Instance) -> None:
    assert instance.start(OLD).returncode == 0
    done = instance.start(LAST)
    assert done.returncode == 1
    assert f"upgrading from {OLD}.1 to {LAST}.1 is not supported" in done.stdout
    assert instance.status()["version"] == f"{OLD}.1"  # nothing was copied


def test_an_upgrade_made_to_fail_leaves_what_only_a_restore_undoes(
    instance: Instance, web: WebServer
) -> None:
    assert instance.start(OLD).returncode == 0
    instance.knob("30")
    done = instance.start(NEXT)
    assert done.returncode == 5, done.stdout + done.stderr  # occ upgrade's ERROR_FAILURE
    assert "Update failed" in done.stdout
    # The new code is on the volume, the database half-migrated, maintenance mode on.
    status = instance.status()
    assert (status["version"], status["needsDbUpgrade"], status["maintenance"]) == (
        f"{NEXT}.1",
        True,
        True,
    )
    half = instance.pg.admin_sql("SELECT to_regclass('oc_libresh_model_half_30')", instance.role)
    assert half.strip() == "oc_libresh_model_half_30"
    # Started again, the versions are equal: the web server starts with what status.php says
    # (libresh's liveness probe restarts such a pod; its readiness never passes).
    assert instance.start(NEXT).returncode == 0
    code, served = web.status()
    assert code == 200
    assert served is not None
    assert (served["needsDbUpgrade"], served["maintenance"]) == (True, True)
    # And the old image may not come back on this volume.
    assert instance.start(OLD).returncode == 1
    instance.knob(None)


def test_a_database_restored_as_the_superuser_is_unreadable_by_the_app_role(
    instance: Instance, web: WebServer
) -> None:
    """A restore that recreates the tables as postgres (no SET ROLE, no --no-owner run as the
    app's role): status.php answers 500 and occ cannot read, as Nextcloud would fail."""
    assert instance.start(OLD).returncode == 0
    dump = subprocess.run(
        [str(instance.pg.bindir / "pg_dump"), "--no-owner", "-d", instance.role],
        env=instance.pg.admin_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    instance.pg.admin_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;", instance.role)
    instance.pg.admin_sql(dump, instance.role)
    assert table_owners(instance.pg, instance.role) == {"postgres"}
    code, _ = web.status()
    assert code == 500
    assert instance.occ("libresh-model:rows").returncode != 0
    assert instance.occ("db:add-missing-indices").returncode != 0
    # The same dump restored as the app's role is readable again.
    instance.pg.admin_sql(
        f"DROP SCHEMA public CASCADE; CREATE SCHEMA public AUTHORIZATION {instance.role};",
        instance.role,
    )
    instance.pg.admin_sql(f"SET ROLE {instance.role};\n{dump}", instance.role)
    assert web.status()[0] == 200
    assert len(instance.rows()) == 1


def test_occ_refuses_a_user_that_does_not_own_config_php(instance: Instance) -> None:
    assert instance.start(OLD).returncode == 0
    done = instance.occ("status", user="root")
    assert done.returncode == 1
    assert "has to be executed with the user that owns the file config/config.php" in done.stderr
