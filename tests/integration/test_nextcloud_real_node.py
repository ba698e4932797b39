"""Nextcloud through libresh in real pods, with the Nextcloud MODEL image
(libresh_cli/lab/images/nextcloud-model: what it follows upstream and what it leaves out is in
its README), libresh's embedded PostgreSQL and Redis and real volumes (local-path) on the lab's
real node.

One installation walked through the steps issue 15 asks of app models: installed at the oldest
modelled version and Ready by libresh's own readiness (status.php); an upgrade made to fail in
`occ upgrade` (the model's test knob), which libresh rolls back, restoring the backup it took
first: the old version serves the same rows afterwards, read with the app's own role; then an
upgrade across two majors, one at a time with a backup before each; then a clone (restore
--as) that reads the same rows with its own connection."""

from __future__ import annotations

import json
import os
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from libresh_cli.lab import realnode
from tests.integration.conftest import Lab
from tests.integration.realpods import (
    POSTGRES_IMAGE,
    drop_instances,
    instance_pod,
    ok,
    pod_log,
    run_libresh,
    run_pod,
    secret_values,
    volume_host_path,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a real node needs root")

OLD, NEXT, LAST = "29.0.16", "30.0.17", "31.0.14"
KNOB = "libresh-model-fail-upgrade"  # the model's test knob (its README, "Test knob")


@pytest.fixture(scope="module")
def cloud(real_lab: Lab) -> Iterator[str]:
    """Nextcloud installed at the oldest modelled version; libresh waited for it."""
    name = f"nc{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    output = ok(
        run_libresh(
            real_lab,
            "install",
            "nextcloud",
            "--name",
            name,
            "--domain",
            f"{name}.example.org",
            "--version",
            OLD,
            "--yes",
        )
    )
    assert f"{name} is installed and healthy" in output
    print(f"install: {time.monotonic() - started:.0f} s")
    yield name
    drop_instances(real_lab, name, f"{name}c")  # and its clone (the last test)


def status_php(lab: Lab, name: str) -> dict[str, object]:
    """GET status.php from the Ready pod, over the node's bridge (the real node is this
    machine)."""
    pod = instance_pod(lab, name, "nextcloud", timeout=120)
    url = f"http://{pod['status']['podIP']}/status.php"
    with urllib.request.urlopen(url, timeout=10) as response:
        return dict(json.loads(response.read()))


def psql_script(sql: str) -> str:
    """psql as the app's role (libresh-postgres, mounted at /conn; password via libpq's
    environment)."""
    return (
        'export PGHOST="${PGHOST:-$(cat /conn/host)}" PGPORT="$(cat /conn/port)" '
        'PGDATABASE="$(cat /conn/database)" PGUSER="$(cat /conn/username)" '
        'PGPASSWORD="$(cat /conn/password)"; '
        f"psql -v ON_ERROR_STOP=1 -X -q -At <<'SQL'\n{sql}\nSQL\n"
    )


def app_role_sql(lab: Lab, name: str, sql: str) -> list[str]:
    code, log = run_pod(lab, name, "sql", POSTGRES_IMAGE, psql_script(sql))
    assert code == 0, log
    return log.splitlines()


MODEL_ROWS = "SELECT note || '|' || written_by FROM oc_libresh_model ORDER BY id;"


def test_installed_at_the_oldest_version_and_ready_by_libresh_readiness(
    real_lab: Lab, cloud: str
) -> None:
    pod = instance_pod(real_lab, cloud, "nextcloud")
    assert pod["spec"]["nodeName"] == realnode.NODE_NAME
    assert pod["status"]["containerStatuses"][0]["image"] == (
        f"docker.io/library/nextcloud:{OLD}-apache"
    )
    log = pod_log(real_lab, cloud, pod["metadata"]["name"])
    assert "Installing with PostgreSQL database" in log
    assert "Nextcloud was successfully installed" in log
    status = status_php(real_lab, cloud)
    assert (status["installed"], status["maintenance"], status["needsDbUpgrade"]) == (
        True,
        False,
        False,
    )
    assert status["version"] == f"{OLD}.1"
    # The installer used libresh's role as it is (it may not create roles): its tables are
    # that role's, read here with the same role.
    owners = app_role_sql(
        real_lab,
        cloud,
        "SELECT DISTINCT tableowner = current_user FROM pg_tables WHERE schemaname = 'public';",
    )
    assert owners == ["t"]
    assert app_role_sql(real_lab, cloud, MODEL_ROWS) == [f"installed|{OLD}.1"]
    # The office-link step ran after the install (no office server: the wopi_url removed).
    config = volume_host_path(real_lab, cloud, "nextcloud-data") / "config" / "config.php"
    assert "config:app:delete richdocuments wopi_url" in config.read_text()


def test_a_failed_occ_upgrade_is_rolled_back_and_the_backup_restored(
    real_lab: Lab, cloud: str, real_storage: Path
) -> None:
    app_role_sql(
        real_lab,
        cloud,
        "INSERT INTO oc_libresh_model (note, written_by) VALUES ('before the upgrade', 'test');",
    )
    rows_before = app_role_sql(real_lab, cloud, MODEL_ROWS)
    data = volume_host_path(real_lab, cloud, "nextcloud-data") / "data"
    (data / KNOB).write_text(NEXT.split(".")[0] + "\n")
    started = time.monotonic()
    failed = run_libresh(real_lab, "upgrade", cloud, "--to", NEXT, "--yes", "-o", "json")
    print(f"failed upgrade and rollback: {time.monotonic() - started:.0f} s")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    (result,) = json.loads(failed.stdout)
    assert result["result"] == "failed", result
    assert f"rolled back to {OLD}" in failed.stderr
    # The old version runs on the restored volume and database: the same rows, read with the
    # app's own role, no half-migrated table, maintenance mode off (the rollback hook).
    status = status_php(real_lab, cloud)
    assert (status["version"], status["maintenance"], status["needsDbUpgrade"]) == (
        f"{OLD}.1",
        False,
        False,
    )
    assert app_role_sql(real_lab, cloud, MODEL_ROWS) == rows_before
    half = app_role_sql(real_lab, cloud, "SELECT to_regclass('oc_libresh_model_half_30');")
    assert half == [""]
    # The knob was in the backup taken before the step: the restore brought it back.
    assert (data / KNOB).exists()
    (data / KNOB).unlink()


def test_upgrades_across_two_majors_one_at_a_time(
    real_lab: Lab, cloud: str, real_storage: Path
) -> None:
    rows_before = app_role_sql(real_lab, cloud, MODEL_ROWS)
    started = time.monotonic()
    done = run_libresh(real_lab, "upgrade", cloud, "--to", LAST, "--yes", "-o", "json")
    print(f"upgrade {OLD} -> {NEXT} -> {LAST}: {time.monotonic() - started:.0f} s")
    output = ok(done)
    steps = json.loads(done.stdout)
    assert [(s["result"], s["to"]) for s in steps] == [("upgraded", LAST)], output
    status = status_php(real_lab, cloud)
    assert (status["version"], status["maintenance"], status["needsDbUpgrade"]) == (
        f"{LAST}.1",
        False,
        False,
    )
    # The entrypoint of each image migrated once: one row per major crossed, after the others.
    rows = app_role_sql(real_lab, cloud, MODEL_ROWS)
    assert rows == [
        *rows_before,
        f"upgraded from {OLD}.1|{NEXT}.1",
        f"upgraded from {NEXT}.1|{LAST}.1",
    ]


def test_a_clone_serves_the_same_rows_with_its_own_role(
    real_lab: Lab, cloud: str, real_storage: Path
) -> None:
    """restore --as: the clone's database and role are its own; libresh's post_restore step
    db-config points config.php at them, and the model (as Nextcloud) must read the restored
    tables with that role."""
    rows = app_role_sql(real_lab, cloud, MODEL_ROWS)
    version = status_php(real_lab, cloud)["version"]  # 31.0.14.1 after the tests above
    done = run_libresh(real_lab, "backup", "now", cloud, "-o", "json")
    ok(done)
    taken = json.loads(done.stdout)
    copy = f"{cloud}c"  # dropped with the source by the fixture `cloud`
    started = time.monotonic()
    ok(
        run_libresh(
            real_lab,
            "restore",
            cloud,
            "--backup",
            taken["backup"],
            "--as",
            copy,
            "--domain",
            f"{copy}.example.org",
            "--yes",
        )
    )
    print(f"clone: {time.monotonic() - started:.0f} s")
    status = status_php(real_lab, copy)
    assert (status["version"], status["maintenance"], status["needsDbUpgrade"]) == (
        version,
        False,
        False,
    )
    assert app_role_sql(real_lab, copy, MODEL_ROWS) == rows
    # config.php names the clone's own server, database and role (the db-config step), not
    # the source's, which it must not touch.
    connection = secret_values(real_lab, copy, "libresh-postgres")
    config = volume_host_path(real_lab, copy, "nextcloud-data") / "config" / "config.php"
    text = config.read_text()
    assert f"'dbname' => '{connection['database']}'" in text
    assert f"'dbuser' => '{connection['username']}'" in text
    assert f"'dbhost' => '{connection['host']}:{connection['port']}'" in text
