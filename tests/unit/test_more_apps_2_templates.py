"""What the Synapse, Element, GoToSocial, Paperless-ngx and Vikunja packages render, checked against
what their NOTES.md say of the images (each test names the upstream source; the NOTES.md
files have them all): configuration, environment, ports, probes, users and volumes."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from libresh_cli.apps.catalog import builtin_catalog, validate_app
from libresh_cli.apps.params import GivenValues, parse_set_options, resolve
from libresh_cli.errors import BadInputError
from tests.unit.test_more_apps_templates import (
    EXTERNAL_POSTGRES,
    container,
    env,
    find,
    load,
    mounts,
    pod_of,
    port_numbers,
    probe_paths,
    render_app,
)

APPS = ["synapse", "element", "gotosocial", "paperless", "vikunja"]
# What each asks of the node at most, in MiB of memory requests (its containers and its
# services): the figures app.yaml's `resources` states.
MEMORY = {"synapse": 384, "element": 32, "gotosocial": 256, "paperless": 672, "vikunja": 192}
SYNAPSE = {"domain": "matrix.example.org", "server_name": "example.org"}
ELEMENT = {"homeserver_url": "https://matrix.example.org", "server_name": "example.org"}


def render_any(name: str, version: str | None = None, **params: Any) -> list[Any]:
    defaults = {"synapse": SYNAPSE, "element": ELEMENT}.get(name, {})
    return render_app(name, version, **{**defaults, **params})


def requested_mib(objects: list[Any]) -> int:
    total = 0
    for o in objects:
        if o["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for c in o["spec"]["template"]["spec"]["containers"]:
            memory = c["resources"]["requests"]["memory"]
            assert memory.endswith("Mi")
            total += int(memory[:-2])
    return total


@pytest.mark.parametrize("name", APPS)
def test_the_app_is_valid_pins_its_images_and_states_its_memory(name: str) -> None:
    app = validate_app(builtin_catalog() / name)
    assert all(":" in v.image and not v.image.endswith(":latest") for v in app.versions)
    assert len(app.versions) >= 2  # an upgrade path the lab test walks
    assert app.category != "other"
    for version in app.versions:
        objects = render_any(name, version.version)
        for claim in app.backup_volumes:
            find(objects, "PersistentVolumeClaim", claim)
        assert app.web is not None
        find(objects, "Service", app.web.service)
        # The sum of the requests is what app.yaml says, and fits a small server.
        assert requested_mib(objects) == MEMORY[name]
        assert app.resources["memory"] == f"{MEMORY[name]}Mi"


def synapse_config(**params: Any) -> dict[str, Any]:
    objects = render_any("synapse", **params)
    text = find(objects, "ConfigMap", "synapse-config")["data"]["homeserver.yaml"]
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def test_synapse_config_has_no_secret_and_reads_them_from_files() -> None:
    """synapse/config/key.py and registration.py: the *_path options; docs/postgres.md:
    args go to psycopg2.connect, so libpq's PG* variables give the connection."""
    config = synapse_config()
    assert config["server_name"] == "example.org"
    assert config["public_baseurl"] == "https://matrix.example.org/"
    assert config["serve_server_wellknown"] is True
    assert config["macaroon_secret_key_path"] == "/secrets/macaroon_secret_key"
    assert config["form_secret_path"] == "/secrets/form_secret"
    assert config["registration_shared_secret_path"] == "/secrets/registration_shared_secret"
    assert config["signing_key_path"] == "/data/signing.key"
    assert config["media_store_path"] == "/data/media_store"
    assert config["enable_registration"] is False and config["report_stats"] is False
    assert config["database"]["name"] == "psycopg2"
    assert set(config["database"]["args"]) == {
        "cp_min",
        "cp_max",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
    }  # no host, user or password in the ConfigMap
    (listener,) = config["listeners"]
    assert listener["port"] == 8008 and listener["x_forwarded"] is True
    assert listener["resources"] == [{"names": ["client", "federation"], "compress": False}]
    pod = pod_of(render_any("synapse"), "synapse")
    synapse = container(pod, "synapse")
    values = env(synapse)
    assert values["SYNAPSE_CONFIG_PATH"] == "/config/homeserver.yaml"
    for name, key in [
        ("PGHOST", "host"),
        ("PGPORT", "port"),
        ("PGDATABASE", "database"),
        ("PGUSER", "username"),
        ("PGPASSWORD", "password"),
    ]:
        assert values[name] == ("libresh-postgres", key)
    assert values["PGSSLMODE"] == "disable"
    secrets = next(v for v in pod["volumes"] if v["name"] == "secrets")["secret"]
    assert [i["key"] for i in secrets["items"]] == [
        "macaroon_secret_key",
        "form_secret",
        "registration_shared_secret",
    ]  # not the database superuser's password
    external = pod_of(render_any("synapse", services=EXTERNAL_POSTGRES), "synapse")
    assert env(container(external, "synapse"))["PGSSLMODE"] == "require"


def test_synapse_runs_as_991_answers_health_and_keeps_media_and_key() -> None:
    """docker/start.py (991:991), EXPOSE 8008, /health (synapse/rest/health.py)."""
    objects = render_any("synapse", media_size="30Gi")
    pod = pod_of(objects, "synapse")
    synapse = container(pod, "synapse")
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["fsGroup"]) == (991, 991)
    assert port_numbers(synapse) == {"http": 8008}
    assert set(probe_paths(synapse).values()) == {("/health", "http")}
    assert mounts(synapse, pod) == {"/data": "synapse-data"}
    assert find(objects, "PersistentVolumeClaim", "synapse-data")["spec"]["resources"]["requests"][
        "storage"
    ] == ("30Gi")
    assert "command" not in synapse and "args" not in synapse  # the image's /start.py run


def test_synapse_gets_a_database_with_locale_c() -> None:
    """synapse/storage/engines/postgres.py refuses another collation or ctype."""
    assert load("synapse").postgres_locale == "C"
    embedded = find(render_any("synapse"), "StatefulSet", "postgres")
    args = {
        e["name"]: e.get("value")
        for e in embedded["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert args["POSTGRES_INITDB_ARGS"] == "--encoding=UTF8 --lc-collate=C --lc-ctype=C"


def ingress_paths(ingress: Any) -> list[tuple[str, str]]:
    return [
        (rule["host"], path["path"])
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]


def test_synapse_delegation_is_served_on_the_server_name() -> None:
    """well_known.py: m.server is SERVER_NAME:443, so that host's federation paths and
    .well-known must reach Synapse."""
    objects = render_any("synapse")
    delegation = find(objects, "Ingress", "synapse-delegation")
    assert ingress_paths(delegation) == [
        ("example.org", "/.well-known/matrix"),
        ("example.org", "/_matrix/federation"),
        ("example.org", "/_matrix/key"),
    ]
    assert delegation["spec"]["tls"] == [
        {"hosts": ["example.org"], "secretName": "synapse-delegation-tls"}
    ]
    assert ingress_paths(find(objects, "Ingress", "synapse")) == [("matrix.example.org", "/")]
    # Not rendered when turned off, or when the server name is the domain itself.
    for params in ({"delegate": False}, {"server_name": "matrix.example.org"}):
        kinds = {(o["kind"], o["metadata"]["name"]) for o in render_any("synapse", **params)}
        assert ("Ingress", "synapse-delegation") not in kinds


def test_synapse_server_name_cannot_change_once_installed() -> None:
    app = load("synapse")
    first = ["domain=matrix.example.org", "server_name=example.org"]
    installed, _ = resolve(app, parse_set_options(first, GivenValues()))
    again = parse_set_options(["server_name=example.net"], GivenValues())
    with pytest.raises(BadInputError, match="server_name cannot change"):
        resolve(app, again, installed)
    domain = load("gotosocial").parameter("domain")
    assert domain is not None and domain.immutable  # GTS_HOST: "DO NOT change this"


def test_element_serves_its_config_json_as_the_image_does() -> None:
    """docs/install.md: config at /app/config.json; nginx listens on ELEMENT_WEB_PORT
    (default.conf.template) as user nginx (Dockerfile); HEALTHCHECK fetches /config.json."""
    objects = render_any("element", brand="Our chat")
    config = json.loads(find(objects, "ConfigMap", "element-config")["data"]["config.json"])
    assert config["default_server_config"]["m.homeserver"] == {
        "base_url": "https://matrix.example.org",
        "server_name": "example.org",
    }
    assert config["brand"] == "Our chat"
    pod = pod_of(objects, "element")
    web = container(pod, "element")
    assert env(web) == {"ELEMENT_WEB_PORT": "8080"}
    assert port_numbers(web) == {"http": 8080}
    assert set(probe_paths(web).values()) == {("/config.json", "http")}
    assert web["volumeMounts"] == [
        {
            "name": "config",
            "mountPath": "/app/config.json",
            "subPath": "config.json",
            "readOnly": True,
        }
    ]
    assert pod["securityContext"]["runAsUser"] == 101
    assert load("element").backup_volumes == () and load("element").requires == ()

    # The entrypoint copies config.json at start only: a new one must roll the pod.
    def annotations(objects: list[Any]) -> Any:
        return find(objects, "Deployment", "element")["spec"]["template"]["metadata"]["annotations"]

    assert annotations(objects) != annotations(render_any("element", brand="Other"))


def test_gotosocial_reads_gts_variables_as_its_config_documents() -> None:
    """internal/config/config.go flags as GTS_*; db-tls-mode words in
    docs/configuration/database.md; /readyz and /livez (internal/api/health)."""
    objects = render_any("gotosocial", domain="social.example.org", account_domain="example.org")
    pod = pod_of(objects, "gotosocial")
    gts = container(pod, "gotosocial")
    values = env(gts)
    assert values["GTS_HOST"] == "social.example.org"
    assert values["GTS_ACCOUNT_DOMAIN"] == "example.org"
    assert values["GTS_PROTOCOL"] == "https" and values["GTS_PORT"] == "8080"
    assert values["GTS_LETSENCRYPT_ENABLED"] == "false"
    assert values["GTS_DB_TYPE"] == "postgres" and values["GTS_DB_TLS_MODE"] == "disable"
    for name, key in [
        ("GTS_DB_ADDRESS", "host"),
        ("GTS_DB_PORT", "port"),
        ("GTS_DB_USER", "username"),
        ("GTS_DB_PASSWORD", "password"),
        ("GTS_DB_DATABASE", "database"),
    ]:
        assert values[name] == ("libresh-postgres", key)
    assert values["GTS_STORAGE_LOCAL_BASE_PATH"] == "/gotosocial/storage"
    assert values["GTS_ACCOUNTS_REGISTRATION_OPEN"] == "false"
    assert values["GTS_TRUSTED_PROXIES"] == "10.42.0.0/16"
    assert port_numbers(gts) == {"http": 8080}
    assert probe_paths(gts) == {
        "startupProbe": ("/readyz", "http"),
        "readinessProbe": ("/readyz", "http"),
        "livenessProbe": ("/livez", "http"),
    }
    assert mounts(gts, pod) == {"/gotosocial/storage": "gotosocial-storage"}
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["fsGroup"]) == (1000, 1000)
    # No account domain: the variable is left out (GoToSocial then uses the host).
    plain = env(container(pod_of(render_any("gotosocial"), "gotosocial"), "gotosocial"))
    assert "GTS_ACCOUNT_DOMAIN" not in plain


@pytest.mark.parametrize(
    ("sslmode", "tls_mode"),
    [("disable", "disable"), ("require", "enable"), ("verify-full", "require")],
)
def test_gotosocial_maps_the_providers_sslmode_to_its_own_words(
    sslmode: str, tls_mode: str
) -> None:
    services = {"postgres": {**EXTERNAL_POSTGRES["postgres"], "sslmode": sslmode}}
    pod = pod_of(render_any("gotosocial", services=services), "gotosocial")
    assert env(container(pod, "gotosocial"))["GTS_DB_TLS_MODE"] == tls_mode


def test_paperless_reads_its_database_broker_and_url_as_documented() -> None:
    """docs/configuration.md (2.20.15 and 3.0.5): PAPERLESS_DB*, PAPERLESS_REDIS,
    PAPERLESS_URL, PAPERLESS_SECRET_KEY, PAPERLESS_ADMIN_*; 3.0 wants DBENGINE explicit and
    replaced DBSSLMODE with DB_OPTIONS (docs/migration-v3.md)."""
    for version, tls in [
        ("2.20.15", ("PAPERLESS_DBSSLMODE", "disable")),
        ("3.0.5", ("PAPERLESS_DB_OPTIONS", "sslmode=disable")),
    ]:
        pod = pod_of(render_any("paperless", version, admin_username="ada"), "paperless")
        values = env(container(pod, "paperless"))
        assert values[tls[0]] == tls[1]
        other = ({"PAPERLESS_DBSSLMODE", "PAPERLESS_DB_OPTIONS"} - {tls[0]}).pop()
        assert other not in values  # each version gets the one it reads
        assert values["PAPERLESS_DBENGINE"] == "postgresql"
        for name, key in [
            ("PAPERLESS_DBHOST", "host"),
            ("PAPERLESS_DBPORT", "port"),
            ("PAPERLESS_DBNAME", "database"),
            ("PAPERLESS_DBUSER", "username"),
            ("PAPERLESS_DBPASS", "password"),
        ]:
            assert values[name] == ("libresh-postgres", key)
        assert values["PAPERLESS_REDIS"] == ("libresh-redis", "uri")
        assert values["PAPERLESS_URL"] == "https://paperless.example.org"
        assert values["PAPERLESS_SECRET_KEY"] == ("libresh-credentials", "secret_key")
        assert values["PAPERLESS_ADMIN_USER"] == "ada"
        assert values["PAPERLESS_ADMIN_PASSWORD"] == ("libresh-credentials", "admin_password")
        assert (values["USERMAP_UID"], values["USERMAP_GID"]) == ("1000", "1000")
    external = pod_of(render_any("paperless", services=EXTERNAL_POSTGRES), "paperless")
    assert env(container(external, "paperless"))["PAPERLESS_DB_OPTIONS"] == "sslmode=require"


def test_paperless_volumes_port_and_upgrade_rule_follow_the_image() -> None:
    """Dockerfile: VOLUME data, media, consume, export; EXPOSE 8000; 3.x only from 2.20.15."""
    objects = render_any("paperless", media_size="50Gi")
    pod = pod_of(objects, "paperless")
    web = container(pod, "paperless")
    assert mounts(web, pod) == {
        "/usr/src/paperless/data": "paperless-data",
        "/usr/src/paperless/media": "paperless-media",
        "/usr/src/paperless/consume": "paperless-consume",
    }
    assert "/usr/src/paperless/export" in {m["mountPath"] for m in web["volumeMounts"]}
    assert port_numbers(web) == {"http": 8000}
    assert set(probe_paths(web).values()) == {("/", "http")}
    app = load("paperless")
    assert app.backup_volumes == ("paperless-data", "paperless-media")  # not the inbox
    assert set(app.requires) == {"postgres", "redis"}
    assert app.one_major_at_a_time and [v.version for v in app.versions][-2:] == [
        "2.20.15",
        "3.0.5",
    ]
    assert (
        find(objects, "PersistentVolumeClaim", "paperless-media")["spec"]["resources"]["requests"][
            "storage"
        ]
        == "50Gi"
    )


def test_vikunja_reads_its_config_from_vikunja_variables() -> None:
    """pkg/config/config.go (VIKUNJA_ + key, '.' as '_'); database.host is HOST:PORT
    (pkg/db/db.go); /health pings the database (pkg/health/health.go); USER 1000, :3456."""
    objects = render_any("vikunja", domain="tasks.example.org")
    pod = pod_of(objects, "vikunja")
    server = container(pod, "vikunja")
    values = env(server)
    names = [e["name"] for e in server["env"]]
    # $(VAR) expands only variables defined before it.
    assert names.index("PG_HOST") < names.index("VIKUNJA_DATABASE_HOST")
    assert names.index("PG_PORT") < names.index("VIKUNJA_DATABASE_HOST")
    assert values["VIKUNJA_DATABASE_HOST"] == "$(PG_HOST):$(PG_PORT)"
    assert values["PG_HOST"] == ("libresh-postgres", "host")
    assert values["PG_PORT"] == ("libresh-postgres", "port")
    assert values["VIKUNJA_DATABASE_TYPE"] == "postgres"
    for name, key in [
        ("VIKUNJA_DATABASE_USER", "username"),
        ("VIKUNJA_DATABASE_PASSWORD", "password"),
        ("VIKUNJA_DATABASE_DATABASE", "database"),
    ]:
        assert values[name] == ("libresh-postgres", key)
    assert values["VIKUNJA_DATABASE_SSLMODE"] == "disable"
    assert values["VIKUNJA_SERVICE_PUBLICURL"] == "https://tasks.example.org/"
    assert values["VIKUNJA_SERVICE_SECRET"] == ("libresh-credentials", "secret")
    assert values["VIKUNJA_SERVICE_ENABLEREGISTRATION"] == "false"
    assert values["VIKUNJA_FILES_BASEPATH"] == "/app/vikunja/files"
    assert mounts(server, pod) == {"/app/vikunja/files": "vikunja-files"}
    assert port_numbers(server) == {"http": 3456}
    assert set(probe_paths(server).values()) == {("/health", "http")}
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["fsGroup"]) == (1000, 1000)
    external = pod_of(render_any("vikunja", services=EXTERNAL_POSTGRES), "vikunja")
    assert env(container(external, "vikunja"))["VIKUNJA_DATABASE_SSLMODE"] == "require"
