"""libresh's embedded PostgreSQL and Redis in real pods on the lab's real node.

The test app `ledger` (tests/fixtures/realnode-catalog) requires both; `libresh install`
renders and applies them as for any app and waits for them by its own readiness. The images are
the ones built here (libresh_cli/lab/images/postgres, redis, restic: what really runs under each
reference is in their README). Pods here then use what libresh gave the app: the connection
Secrets' credentials, the volume."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libresh_cli.kube.client import wait_for
from libresh_cli.kube.store import secret_manifest
from libresh_cli.lab import realnode
from tests.integration.conftest import Lab
from tests.integration.realpods import (
    POSTGRES_IMAGE,
    REDIS_IMAGE,
    drop_instances,
    instance_pod,
    pod_log,
    run_pod,
    secret_values,
    volume_host_path,
)
from tests.integration.test_apps import LIBRESH

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a real node needs root")

CATALOG = Path(__file__).resolve().parents[1] / "fixtures" / "realnode-catalog"
ROWS = 500


def libresh(lab: Lab, *args: str) -> str:
    """The `libresh` command's stdout and stderr, once it succeeded."""
    done = run_libresh(lab, *args)
    return done.stdout + done.stderr


def run_libresh(lab: Lab, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [LIBRESH, "--kubeconfig", str(lab.kubeconfig), "--catalog", str(CATALOG), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        stdin=subprocess.DEVNULL,
        env={**lab.cli_env(), "COLUMNS": "200"},
    )
    assert done.returncode == 0 or not check, done.stdout + done.stderr
    return done


def install_ledger(lab: Lab, name: str) -> None:
    """`libresh install ledger`, once: a CreateContainerConfigError right after the apply that
    made the Secret (the kubelet's cache not having it yet) is waited out by libresh's health
    check (libresh_cli/apps/health.py CONFIG_ERROR_GRACE), not repaired by a second install."""
    args = ("install", "ledger", "--name", name, "--domain", f"{name}.example.org", "--yes")
    done = run_libresh(lab, *args, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{name} is installed and healthy" in done.stdout + done.stderr


@pytest.fixture(scope="module")
def ledger(real_lab: Lab) -> Iterator[str]:
    """An installed `ledger`, with its embedded PostgreSQL and Redis Ready (libresh waited)."""
    name = f"l{uuid.uuid4().hex[:7]}"
    install_ledger(real_lab, name)
    yield name
    drop_instances(real_lab, name)


def psql_script(sql: str) -> str:
    """A shell script for the postgres image: psql with the app's connection (the Secret's
    files, mounted at /conn; the password through libpq's environment, never argv)."""
    return (
        'export PGHOST="${PGHOST:-$(cat /conn/host)}" PGPORT="$(cat /conn/port)" '
        'PGDATABASE="$(cat /conn/database)" PGUSER="$(cat /conn/username)" '
        'PGPASSWORD="$(cat /conn/password)"; '
        f"psql -v ON_ERROR_STOP=1 -X -q -At <<'SQL'\n{sql}\nSQL\n"
    )


def test_postgres_runs_the_image_contract_on_the_real_node(real_lab: Lab, ledger: str) -> None:
    pod = instance_pod(real_lab, ledger, "postgres")
    assert pod["spec"]["nodeName"] == realnode.NODE_NAME
    (status,) = pod["status"]["containerStatuses"]
    assert status["ready"] is True
    assert status["containerID"].startswith("containerd://")
    assert status["image"] == POSTGRES_IMAGE
    log = pod_log(real_lab, ledger, pod["metadata"]["name"])
    # docker-library/postgres docker-entrypoint.sh, then PostgreSQL itself.
    assert "PostgreSQL init process complete; ready for start up." in log
    # libresh's initdb.d script (ConfigMap libresh-postgres-init, mode 0644): sourced.
    assert "sourcing /docker-entrypoint-initdb.d/10-libresh-app-role.sh" in log
    assert "database system is ready to accept connections" in log
    # PGDATA, a subdirectory of the volume made by the entrypoint as root, is handed to
    # Alpine's postgres (uid 70; upstream changes its owner, not its group) with mode 0700;
    # what the server writes is postgres:postgres, 70:70.
    pgdata = volume_host_path(real_lab, ledger, "data-postgres-0") / "pgdata"
    info = pgdata.stat()
    assert (info.st_uid, info.st_mode & 0o777) == (70, 0o700)
    version = pgdata / "PG_VERSION"
    assert (version.stat().st_uid, version.stat().st_gid) == (70, 70)
    assert version.read_text().strip() == "17"  # what really runs: README.md of the image


def test_app_role_from_the_connection_secret_writes_rows(real_lab: Lab, ledger: str) -> None:
    sql = f"""
SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user;
CREATE TABLE entries (id int PRIMARY KEY, body text NOT NULL);
INSERT INTO entries SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g;
SELECT count(*) FROM entries;
"""
    code, log = run_pod(real_lab, ledger, "writer", POSTGRES_IMAGE, psql_script(sql))
    assert code == 0, log
    assert log.splitlines() == ["f|f", str(ROWS)]


def test_redis_answers_with_the_password_from_its_secret(real_lab: Lab, ledger: str) -> None:
    pod = instance_pod(real_lab, ledger, "redis")
    assert pod["spec"]["nodeName"] == realnode.NODE_NAME
    assert pod["status"]["containerStatuses"][0]["image"] == REDIS_IMAGE
    script = (
        'export REDISCLI_AUTH="$(cat /conn/password)"; h="${PGHOST:-$(cat /conn/host)}"; '
        'redis-cli -h "$h" SET ledger written >/dev/null && redis-cli -h "$h" GET ledger; '
        'echo "wrong: $(REDISCLI_AUTH=wrong redis-cli -h "$h" PING 2>&1 | tr "\\n" " ")"'
    )
    code, log = run_pod(
        real_lab, ledger, "cache", REDIS_IMAGE, script, secret="libresh-redis", target="redis"
    )
    assert code == 0, log
    lines = log.splitlines()
    assert lines[0] == "written"
    # Another password is refused (Redis 6+: WRONGPASS; AUTH, then the command, fails).
    assert lines[-1].startswith("wrong: ") and "WRONGPASS" in lines[-1], log
    assert secret_values(real_lab, ledger, "libresh-redis")["port"] == "6379"


CHECKSUM_SQL = "SELECT count(*), md5(string_agg(id || ':' || body, ',' ORDER BY id)) FROM entries;"


def table_checksum(lab: Lab, name: str) -> str:
    code, log = run_pod(lab, name, "checksum", POSTGRES_IMAGE, psql_script(CHECKSUM_SQL))
    assert code == 0, log
    return log.strip()


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_backup_and_restore_with_real_restic_and_pg_dump(
    real_lab: Lab, ledger: str, real_storage: Path
) -> None:
    """take_backup -> the data is dropped -> restore_backup, compared by the table's checksum
    and the files' sha256, the runner being the real one (pg_dump 17, restic from the image
    built here) on the real node."""
    data = volume_host_path(real_lab, ledger, "ledger-data")
    (data / "notes").mkdir(exist_ok=True)
    (data / "notes" / "random.bin").write_bytes(os.urandom(256 * 1024))
    (data / "hello.txt").write_text("kept by a backup\n")
    rows_before, files_before = table_checksum(real_lab, ledger), file_hashes(data)
    assert rows_before.startswith(f"{ROWS}|")

    taken = json.loads(run_libresh(real_lab, "backup", "now", ledger, "-o", "json").stdout)
    assert taken["instance"] == ledger
    assert taken["files"] >= 2
    assert any(real_storage.iterdir()), "the repository is on this machine's disk"

    sql = "DELETE FROM entries WHERE id % 2 = 0; UPDATE entries SET body = 'lost';"
    code, log = run_pod(real_lab, ledger, "damage", POSTGRES_IMAGE, psql_script(sql))
    assert code == 0, log
    shutil.rmtree(data / "notes")
    (data / "hello.txt").write_text("overwritten\n")
    (data / "stray.txt").write_text("made after the backup\n")
    assert table_checksum(real_lab, ledger) != rows_before

    restored = libresh(
        real_lab, "restore", ledger, "--backup", taken["backup"], "--no-backup", "--yes"
    )
    assert taken["backup"] in restored
    assert table_checksum(real_lab, ledger) == rows_before
    assert file_hashes(data) == files_before


def test_a_real_cronjob_fires_a_scheduled_backup(
    real_lab: Lab, ledger: str, real_storage: Path
) -> None:
    """The schedule's CronJob, run by the controller-manager's CronJob controller at the next
    minute, backs up (and applies the retention) in a real pod: the repository then lists a
    backup whose reason is `scheduled`."""
    libresh(real_lab, "backup", "schedule", ledger, "--cron", "* * * * *", "--yes")
    try:
        deadline = time.monotonic() + 150
        scheduled: list[dict[str, str]] = []
        while time.monotonic() < deadline and not scheduled:
            time.sleep(5)
            if not _scheduled_job_finished(real_lab, ledger):
                continue
            listed = run_libresh(real_lab, "backup", "list", ledger, "-o", "json").stdout
            scheduled = [b for b in json.loads(listed) if b["reason"] == "scheduled"]
        assert scheduled, "no scheduled backup within 150 s"
        assert scheduled[0]["version"] == "1.0.0"
    finally:
        libresh(real_lab, "backup", "schedule", ledger, "--remove", "--yes")


def _scheduled_job_finished(lab: Lab, namespace: str) -> bool:
    """A Job made by the CronJob completed; one that failed fails the test with its log."""
    with lab.kube() as kube:
        jobs = kube.list("batch/v1", "Job", namespace)
    for job in jobs:
        owners = [o["kind"] for o in job["metadata"].get("ownerReferences", [])]
        conditions = {c["type"]: c["status"] for c in job.get("status", {}).get("conditions", [])}
        if "CronJob" in owners and conditions.get("Failed") == "True":
            pytest.fail(f"the scheduled Job {job['metadata']['name']} failed: {job['status']}")
        if "CronJob" in owners and conditions.get("Complete") == "True":
            return True
    return False


def test_external_provider_provisions_on_a_real_server(
    real_lab: Lab, ledger: str, tmp_path: Path
) -> None:
    """The external provider's provisioning Job (psql in the postgres image, a real exit code)
    makes a second instance's role and database on a real server, here the first instance's
    PostgreSQL, with an admin that has CREATEROLE and CREATEDB and is no superuser, as managed
    servers give (services/postgres-provision.sh)."""
    admin_password = uuid.uuid4().hex
    # The password reaches psql through the environment (psql's \getenv), never an argv.
    make_admin = (
        'export PGHOST="${PGHOST:-postgres}" PGUSER=postgres PGDATABASE=postgres '
        'PGPASSWORD="$(cat /conn/postgres_superuser_password)"; '
        "psql -v ON_ERROR_STOP=1 -X -q <<'SQL'\n\\getenv pw ADMIN_PASSWORD\n"
        "CREATE ROLE provisioner LOGIN CREATEROLE CREATEDB PASSWORD :'pw';\nSQL\n"
    )
    code, log = run_pod(
        real_lab,
        ledger,
        "admin",
        POSTGRES_IMAGE,
        make_admin,
        secret="libresh-credentials",
        env={"ADMIN_PASSWORD": admin_password},
    )
    assert code == 0, log
    password_file = tmp_path / "admin-password"
    password_file.write_text(admin_password)
    password_file.chmod(0o600)
    host = f"postgres.{ledger}.svc.cluster.local"
    libresh(
        real_lab, "services", "set", "postgres", "--provider", "external", "--host", host,
        "--admin-user", "provisioner", "--sslmode", "disable",
        "--password-file", str(password_file), "--yes",
    )  # fmt: skip
    second = f"x{uuid.uuid4().hex[:7]}"
    try:
        install_ledger(real_lab, second)
        sql = (
            "SELECT current_database(), rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
            "WHERE rolname = current_user;\n"
            "CREATE TABLE entries (id int PRIMARY KEY);\n"
            "INSERT INTO entries SELECT generate_series(1, 10);\n"
            "SELECT count(*) FROM entries;"
        )
        code, log = run_pod(real_lab, second, "writer", POSTGRES_IMAGE, psql_script(sql))
        assert code == 0, log
        database = f"libresh_{second}"
        assert log.splitlines() == [f"{database}|f|f|f", "10"]
        # The admin's credentials were there only while the Job ran.
        with real_lab.kube() as kube:
            assert kube.get("v1", "Secret", "libresh-postgres-admin", second) is None
    finally:
        libresh(real_lab, "services", "set", "postgres", "--provider", "embedded", "--yes")
        drop_instances(real_lab, second)
        with real_lab.kube() as kube:
            kube.delete("v1", "Namespace", second)


@pytest.fixture
def bare_namespace(real_lab: Lab) -> Iterator[str]:
    name = f"pg{uuid.uuid4().hex[:6]}"
    with real_lab.kube() as kube:
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    with real_lab.kube() as kube:
        kube.delete("v1", "Namespace", name)


def _postgres_pod(namespace: str, env: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "server", "namespace": namespace,
                     "labels": {"app.kubernetes.io/component": "postgres"}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "postgres", "image": POSTGRES_IMAGE, "imagePullPolicy": "Never",
                "env": env,
                "readinessProbe": {"exec": {"command": ["pg_isready", "-U", "boss"]},
                                   "periodSeconds": 1},
                "volumeMounts": [
                    {"name": "init", "mountPath": "/docker-entrypoint-initdb.d"},
                    {"name": "pw", "mountPath": "/etc/pw"},
                ],
            }],
            "volumes": [
                {"name": "init", "configMap": {"name": "init"}},
                {"name": "pw", "secret": {"secretName": "pw"}},
            ],
        },
    }  # fmt: skip


def test_postgres_image_follows_the_documented_environment(
    real_lab: Lab, bare_namespace: str
) -> None:
    """What the official image documents beyond libresh's use: POSTGRES_PASSWORD_FILE,
    POSTGRES_USER and POSTGRES_DB, POSTGRES_INITDB_ARGS, *.sql and *.sql.gz and sourced *.sh
    in name order, other files ignored; no password at all is refused."""
    namespace, password = bare_namespace, uuid.uuid4().hex
    init = {
        "01-table.sql": "CREATE TABLE t (x int); INSERT INTO t VALUES (1);",
        "02-more.sh": 'docker_process_sql <<<"INSERT INTO t VALUES (2);"',
        "04-readme.txt": "not run",
    }
    gz = gzip.compress(b"INSERT INTO t VALUES (3);")
    env = [
        {"name": "POSTGRES_USER", "value": "boss"},
        {"name": "POSTGRES_DB", "value": "things"},
        {"name": "POSTGRES_PASSWORD_FILE", "value": "/etc/pw/password"},
        {"name": "POSTGRES_INITDB_ARGS", "value": "--data-checksums --no-instructions"},
    ]
    with real_lab.kube() as kube:
        kube.apply(secret_manifest("pw", namespace, {"password": password}, labels={}))
        config_map = {"apiVersion": "v1", "kind": "ConfigMap", "data": init,
                      "metadata": {"name": "init", "namespace": namespace},
                      "binaryData": {"03-gz.sql.gz": base64.b64encode(gz).decode()}}  # fmt: skip
        kube.apply(config_map)
        kube.apply(_postgres_pod(namespace, env))
    server = instance_pod(real_lab, namespace, "postgres", timeout=90)
    log = pod_log(real_lab, namespace, "server")
    assert "ignoring /docker-entrypoint-initdb.d/04-readme.txt" in log
    connection = {"host": server["status"]["podIP"], "port": "5432", "database": "things",
                  "username": "boss", "password": password}  # fmt: skip
    with real_lab.kube() as kube:
        kube.apply(secret_manifest("conn", namespace, connection, labels={}))
    sql = "SELECT string_agg(x::text, ',' ORDER BY x) FROM t; SHOW data_checksums;"
    code, out = run_pod(real_lab, namespace, "client", POSTGRES_IMAGE, psql_script(sql),
                        secret="conn", env={"PGHOST": connection["host"]})  # fmt: skip
    assert code == 0, out
    assert out.splitlines() == ["1,2,3", "on"]
    # Without any password, an empty data directory is not initialised.
    with real_lab.kube() as kube:
        kube.delete("v1", "Pod", "server", namespace)
        gone = lambda: True if kube.get("v1", "Pod", "server", namespace) is None else None  # noqa: E731
        wait_for("the server pod to go", gone, timeout=60)
        kube.apply(_postgres_pod(namespace, env[:2]))
        pod = _terminated(kube, namespace, "server")
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1
    assert "superuser password is not specified" in pod_log(real_lab, namespace, "server")


def _terminated(kube: Any, namespace: str, name: str) -> Any:
    def done() -> Any:
        pod = kube.get("v1", "Pod", name, namespace)
        statuses = (pod or {}).get("status", {}).get("containerStatuses") or []
        return pod if statuses and "terminated" in statuses[0]["state"] else None

    return wait_for(f"pod {name} to finish", done, timeout=60)
