"""The Nextcloud package (apps/nextcloud/app.yaml) replayed against a MODEL of the official
image's rules (tests/models/nextcloud.py, each rule with its upstream source).

Each scenario is played twice where it matters: with the steps libresh ships now, which must
leave a working Nextcloud, and with the steps it shipped before, which the model must show
broken the way the upstream sources say (the model's teeth)."""

from __future__ import annotations

from pathlib import Path

import pytest

from libresh_cli.apps.catalog import Catalog
from libresh_cli.apps.model import App
from tests.models.nextcloud import (
    Connection,
    Database,
    NextcloudModel,
    Outcome,
    run_hook_command,
)

APPS = Path(__file__).resolve().parents[2] / "apps"
EMBEDDED = Connection("postgres:5432", "nextcloud", "nextcloud")
OCC = ["php", "/var/www/html/occ"]


@pytest.fixture(scope="module")
def nextcloud() -> App:
    return Catalog.from_sources([APPS]).load("nextcloud")


def run_phase(model: NextcloudModel, app: App, phase: str, conn: Connection) -> Outcome:
    outcome = Outcome(0)
    for step in app.hooks.get(phase, ()):
        outcome = run_hook_command(model, list(step.command), conn)
        if not outcome.ok:
            return outcome
    return outcome


def server_for(conn: Connection, superuser_app: bool) -> Database:
    """A fresh server where the app's role is libresh's own (no CREATEROLE), or the superuser
    as for instances installed before this release."""
    database = Database()
    if superuser_app:
        database.superusers.add(conn.user)
    else:
        database.roles[conn.user] = False
    return database


def installed(
    version: str, conn: Connection = EMBEDDED, superuser_app: bool = False
) -> NextcloudModel:
    """A Nextcloud installed by the image at `version`, on libresh's embedded PostgreSQL."""
    model = NextcloudModel(db=server_for(conn, superuser_app))
    assert model.start(version, conn).ok and model.ready()
    model.volume.files = model.db.files = 7
    return model


def test_the_installer_uses_libresh_role_and_not_an_oc_admin_of_its_own() -> None:
    model = installed("34.0.2")
    assert model.volume.config["dbuser"] == "nextcloud" and model.db.owner == "nextcloud"
    old_style = installed("34.0.2", superuser_app=True)  # a superuser can create roles (I1)
    assert old_style.volume.config["dbuser"] == "oc_admin" and old_style.db.owner == "oc_admin"


def test_an_upgrade_step_with_the_shipped_hooks_ends_migrated_and_out_of_maintenance(
    nextcloud: App,
) -> None:
    model = installed("33.0.7")
    assert run_phase(model, nextcloud, "pre_upgrade", EMBEDDED).ok
    assert model.start("34.0.2", EMBEDDED).ok  # the new image's entrypoint migrates
    assert model.ready()  # what libresh waits for before post_upgrade
    assert run_phase(model, nextcloud, "post_upgrade", EMBEDDED).ok
    assert (model.volume.code, model.db.schema_version) == ("34.0.2", "34.0.2")
    assert model.volume.maintenance is False


def test_teeth_occ_upgrade_after_the_entrypoint_upgraded_exits_2() -> None:
    """What every Nextcloud upgrade did before: pre_upgrade maintenance on, the entrypoint's
    upgrade keeps it on (U2), then the post_upgrade `occ upgrade` finds nothing to do in
    maintenance mode (U1)."""
    model = installed("33.0.7")
    assert model.occ(["maintenance:mode", "--on"]).ok
    assert model.start("34.0.2", EMBEDDED).ok
    assert model.volume.maintenance is True
    assert run_hook_command(model, [*OCC, "upgrade", "--no-interaction"], EMBEDDED).code == 2


def test_the_shipped_post_upgrade_hooks_do_not_run_occ_upgrade(nextcloud: App) -> None:
    commands = [" ".join(s.command) for s in nextcloud.hooks["post_upgrade"]]
    assert not [c for c in commands if "occ upgrade" in c]


def test_teeth_the_old_image_refuses_a_volume_the_new_one_touched() -> None:
    """The old rollback applied the previous version before restoring (E1)."""
    model = installed("33.0.7")
    model.broken_migration_to = "34.0.2"
    assert not model.start("34.0.2", EMBEDDED).ok  # the migration fails: the step fails
    refused = model.start("33.0.7", EMBEDDED)
    assert refused.code == 1 and "higher than the docker image version" in refused.message


def test_a_rollback_that_restores_first_brings_the_old_version_back(nextcloud: App) -> None:
    model = installed("33.0.7")
    assert run_phase(model, nextcloud, "pre_backup", EMBEDDED).ok
    before_step = model.snapshot(EMBEDDED)
    assert run_phase(model, nextcloud, "post_backup", EMBEDDED).ok
    assert run_phase(model, nextcloud, "pre_upgrade", EMBEDDED).ok
    model.broken_migration_to = "34.0.2"
    assert not model.start("34.0.2", EMBEDDED).ok
    # libresh's rollback: restore (app stopped), post_restore hooks, old version, rollback
    model.restore(before_step, EMBEDDED)
    assert run_phase(model, nextcloud, "post_restore", EMBEDDED).ok
    assert model.start("33.0.7", EMBEDDED).ok and model.ready()
    assert run_phase(model, nextcloud, "rollback", EMBEDDED).ok
    assert (model.volume.code, model.db.schema_version, model.db.files) == ("33.0.7", "33.0.7", 7)
    assert model.volume.maintenance is False


@pytest.mark.parametrize(
    ("source", "target", "superuser_app"),
    [
        # a clone on an external server: another database and role (libresh_<instance>)
        (
            Connection("db.example.org:5432", "libresh_cloud", "libresh_cloud"),
            Connection("db.example.org:5432", "libresh_cloud2", "libresh_cloud2"),
            False,
        ),
        # an instance installed before this release (its superuser made oc_admin), restored
        # in place: the restore makes its connection's role the owner (P1)
        (EMBEDDED, EMBEDDED, True),
    ],
    ids=["clone-on-external-postgres", "in-place-oc_admin"],
)
def test_a_restored_nextcloud_reads_its_database_only_with_the_db_config_step(
    nextcloud: App, source: Connection, target: Connection, superuser_app: bool
) -> None:
    origin = installed("34.0.2", source, superuser_app=superuser_app)
    assert run_phase(origin, nextcloud, "pre_backup", source).ok
    taken = origin.snapshot(source)
    without = NextcloudModel(db=server_for(target, superuser_app))
    without.restore(taken, target)
    assert without.status() is None  # teeth: config.php names a role that cannot read (S1)

    restored = NextcloudModel(db=server_for(target, superuser_app))
    restored.restore(taken, target)
    assert run_phase(restored, nextcloud, "post_restore", target).ok
    assert restored.start("34.0.2", target).ok and restored.ready()
    assert restored.volume.config["dbuser"] == target.user
    assert restored.volume.maintenance is False and restored.db.files == 7
