"""What the Nextcloud package renders, checked against the rules of the image it runs (each test
names the upstream source in its docstring; apps/nextcloud/NOTES.md has them all)."""

from __future__ import annotations

from typing import Any

import pytest

from libresh_cli.apps.catalog import builtin_catalog
from libresh_cli.apps.instance import Instance
from libresh_cli.apps.render import (
    RenderError,
    apache_body_limit,
    generated_secret_keys,
    render,
    size_in_bytes,
)
from libresh_cli.apps.schema import load_app

NEXTCLOUD = load_app(builtin_catalog() / "nextcloud")
EXTERNAL = {
    "postgres": {
        "provider": "external",
        "host": "db.example.org",
        "port": 6432,
        "admin_user": "admin",
        "sslmode": "require",
    },
    "redis": {"provider": "external", "host": "cache.example.org", "port": 6380},
}


def render_nextcloud(upload: str = "10G", services: dict[str, Any] | None = None) -> list[Any]:
    secrets = {k: "s3cr3t-" + k for k in generated_secret_keys(NEXTCLOUD)}
    params = {
        "domain": "cloud.example.org",
        "admin_user": "admin",
        "max_upload_size": upload,
        "storage_size": "50Gi",
    }
    service_secrets = {"postgres_admin_password": "a", "redis_password": "r"} if services else {}
    instance = Instance(
        "office",
        NEXTCLOUD,
        NEXTCLOUD.latest,
        params,
        secrets,
        services or {},
        service_secrets,
    )
    return render(instance)


def find(objects: list[Any], kind: str, name: str) -> Any:
    return next(o for o in objects if (o["kind"], o["metadata"]["name"]) == (kind, name))


def web_pod(objects: list[Any]) -> Any:
    return find(objects, "Deployment", "nextcloud")["spec"]["template"]["spec"]


def cron_pod(objects: list[Any]) -> Any:
    cron = find(objects, "CronJob", "nextcloud-cron")
    return cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def env_names(pod: Any) -> list[str]:
    return [e["name"] for e in pod["containers"][0]["env"]]


def test_the_cron_job_has_the_web_environment() -> None:
    """redis.config.php and reverse-proxy.config.php read the environment at every run
    (nextcloud/docker .config/): a cron.php without REDIS_HOST locks in the database while the
    web pods lock in Redis; without OVERWRITECLIURL its links point at localhost."""
    objects = render_nextcloud()
    web, cron = web_pod(objects)["containers"][0]["env"], cron_pod(objects)["containers"][0]["env"]
    assert cron == web
    assert {"REDIS_HOST", "REDIS_HOST_PORT", "OVERWRITECLIURL", "OVERWRITEHOST"} <= set(
        env_names(cron_pod(objects))
    )
    url = next(e for e in web if e["name"] == "OVERWRITECLIURL")
    assert url["value"] == "https://cloud.example.org"


def test_external_services_on_other_ports_reach_the_image() -> None:
    """The installer takes the port from --database-host host:port (nextcloud/server
    lib/private/Setup/AbstractDatabase.php), the entrypoint passes POSTGRES_HOST as it is;
    Redis' port is REDIS_HOST_PORT (redis.config.php, and the PHP session handler)."""
    objects = render_nextcloud(services=EXTERNAL)
    env = {e["name"]: e for e in web_pod(objects)["containers"][0]["env"]}
    assert env["POSTGRES_HOST"]["value"] == "$(PG_HOST):$(PG_PORT)"
    names = list(env)
    # Kubernetes expands $(VAR) only from variables defined before it in the list.
    assert names.index("PG_HOST") < names.index("POSTGRES_HOST")
    assert names.index("PG_PORT") < names.index("POSTGRES_HOST")
    assert env["PG_PORT"]["valueFrom"]["secretKeyRef"] == {
        "name": "libresh-postgres",
        "key": "port",
    }
    assert env["REDIS_HOST_PORT"]["valueFrom"]["secretKeyRef"] == {
        "name": "libresh-redis",
        "key": "port",
    }
    secret = find(objects, "Secret", "libresh-postgres")
    assert secret["data"]["port"] == "NjQzMg=="  # "6432"


@pytest.mark.parametrize(
    ("upload", "limit"),
    [
        ("512M", str(512 * 1024**2)),
        ("2G", "0"),
        ("10G", "0"),
        ("1G", str(1024**3)),
        ("1Gi", str(1024**3)),
        ("10Gi", "0"),
    ],
)
def test_apache_takes_the_upload_limit_too(upload: str, limit: str) -> None:
    """The image's Apache has LimitRequestBody ${APACHE_BODY_LIMIT}, 1 GiB by default
    (nextcloud/docker Dockerfile); Apache accepts at most 2147483647 there, 0 = no limit.
    PHP gets its own spelling of the same size (10Gi -> 10G: PHP's units are binary)."""
    env = {
        e["name"]: e.get("value") for e in web_pod(render_nextcloud(upload))["containers"][0]["env"]
    }
    assert env["APACHE_BODY_LIMIT"] == limit
    assert env["PHP_UPLOAD_LIMIT"] == upload.removesuffix("i")


def test_a_value_that_does_not_match_its_pattern_is_shown_an_example() -> None:
    from libresh_cli.apps.params import problem_with

    upload = NEXTCLOUD.parameter("max_upload_size")
    assert upload is not None
    assert problem_with(upload, "ten gigs") == (
        "it must look like 10Gi (it must match ^[0-9]+(K|M|G|Ki|Mi|Gi)$)"
    )


def test_sizes_are_parsed_or_refused() -> None:
    assert size_in_bytes("50Gi") == 50 * 1024**3
    assert apache_body_limit("2047M") == str(2047 * 1024**2)
    with pytest.raises(RenderError, match="is not a size"):
        size_in_bytes("lots")


def test_health_means_installed_and_migrated_and_the_migration_is_not_killed() -> None:
    """status.php answers 200 with installed and needsDbUpgrade in every state (nextcloud/server
    status.php), so an HTTP status check cannot tell an open web installer from a working
    instance; the entrypoint migrates before Apache starts (docker-entrypoint.sh), so nothing
    may restart the container while it does."""
    container = web_pod(render_nextcloud())["containers"][0]
    ready = container["readinessProbe"]["exec"]["command"][-1]
    assert "status.php" in ready and '"installed"' in ready and '"needsDbUpgrade"' in ready
    # The kubelet runs liveness only once the startup probe passed: that one must pass as soon
    # as Apache answers, or a failed migration would never be caught by liveness.
    started = container["startupProbe"]["exec"]["command"][-1]
    assert "status.php" in started and '"installed"' not in started
    startup = container["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert budget >= NEXTCLOUD.health.timeout  # an hour: as long as libresh waits
    # Alive unless the entrypoint failed and Apache started anyway (then the pod crash-loops
    # and libresh rolls back at once); an error page (database down) restarts nothing.
    alive = container["livenessProbe"]["exec"]["command"][-1]
    assert 'empty($s["installed"])' in alive and '"maintenance"' in alive
    assert "if (!is_array($s)) exit(0);" in alive


def test_the_web_pod_waits_for_the_database_and_does_not_reown_every_file() -> None:
    """The entrypoint gives up installing after 11 tries and never retries after a restart
    (docker-entrypoint.sh); the kubelet re-owns every file at each start without
    fsGroupChangePolicy: OnRootMismatch (Kubernetes docs, security context)."""
    pod = web_pod(render_nextcloud())
    (wait,) = pod["initContainers"]
    assert "pg_isready" in wait["command"][-1]
    assert pod["securityContext"] == {"fsGroup": 33, "fsGroupChangePolicy": "OnRootMismatch"}


def test_the_embedded_database_gives_the_app_its_own_role() -> None:
    """POSTGRES_USER of the postgres image is a superuser (docker-library/postgres), which
    Nextcloud's installer would use to make an oc_admin role of its own (nextcloud/server
    lib/private/Setup/PostgreSQL.php): the app gets libresh's role instead."""
    objects = render_nextcloud()
    server = find(objects, "StatefulSet", "postgres")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in server["containers"][0]["env"]}
    assert env["POSTGRES_USER"]["value"] == "postgres"
    # Instances installed before the superuser's own password existed still start: their
    # credentials Secret lacks the key, which only a new data directory reads.
    superuser = env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert superuser["key"] == "postgres_superuser_password" and superuser["optional"] is True
    assert env["APP_USER"]["valueFrom"]["secretKeyRef"] == {
        "name": "libresh-postgres",
        "key": "username",
    }
    init = find(objects, "ConfigMap", "libresh-postgres-init")
    assert "NOCREATEROLE" in init["data"]["10-libresh-app-role.sh"]
    mounts = {m["mountPath"] for m in server["containers"][0]["volumeMounts"]}
    assert "/docker-entrypoint-initdb.d" in mounts
