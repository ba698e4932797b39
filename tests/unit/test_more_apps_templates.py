"""What the HedgeDoc, Listmonk and Forgejo packages render, checked against what their
NOTES.md says of the images (each test names the upstream source; the NOTES.md files have
them all): environment names, ports, probe paths, users and volumes."""

from __future__ import annotations

import re
from typing import Any

import pytest

from libresh_cli.apps.catalog import builtin_catalog, validate_app
from libresh_cli.apps.instance import Instance
from libresh_cli.apps.model import App
from libresh_cli.apps.render import generated_secret_keys, render
from libresh_cli.apps.schema import load_app
from libresh_cli.cli.main import _run

EXTERNAL_POSTGRES = {
    "postgres": {
        "provider": "external",
        "host": "db.example.org",
        "port": 6432,
        "admin_user": "admin",
        "sslmode": "require",
    }
}


def load(name: str) -> App:
    return load_app(builtin_catalog() / name)


def render_app(
    name: str,
    version: str | None = None,
    services: dict[str, Any] | None = None,
    **params: Any,
) -> list[Any]:
    app = load(name)
    values = {p.name: p.default for p in app.parameters if not p.secret}
    values.update({"domain": f"{name}.example.org", **params})
    secrets = {k: "s3cr3t-" + k for k in generated_secret_keys(app)}
    chosen = app.version(version) if version else app.latest
    assert chosen is not None
    service_secrets = {"postgres_admin_password": "a"} if services else {}
    instance = Instance("team", app, chosen, values, secrets, services or {}, service_secrets)
    return render(instance)


def find(objects: list[Any], kind: str, name: str) -> Any:
    return next(o for o in objects if (o["kind"], o["metadata"]["name"]) == (kind, name))


def pod_of(objects: list[Any], name: str) -> Any:
    return find(objects, "Deployment", name)["spec"]["template"]["spec"]


def container(pod: Any, name: str) -> Any:
    return next(c for c in pod["containers"] if c["name"] == name)


def env(c: Any) -> dict[str, Any]:
    """name -> value, or (secret, key) for a value read from a Secret."""
    found: dict[str, Any] = {}
    for e in c.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        found[e["name"]] = (ref["name"], ref["key"]) if ref else e.get("value")
    return found


def mounts(c: Any, pod: Any) -> dict[str, str]:
    """mount path -> claim name of the PersistentVolumeClaim mounted there."""
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod.get("volumes", [])
        if "persistentVolumeClaim" in v
    }
    return {m["mountPath"]: claims[m["name"]] for m in c["volumeMounts"] if m["name"] in claims}


def probe_paths(c: Any) -> dict[str, tuple[str, Any]]:
    return {
        kind: (c[kind]["httpGet"]["path"], c[kind]["httpGet"]["port"])
        for kind in ("startupProbe", "readinessProbe", "livenessProbe")
        if kind in c and "httpGet" in c[kind]
    }


def port_numbers(c: Any) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in c["ports"]}


APPS = ["hedgedoc", "listmonk"]


@pytest.mark.parametrize("name", APPS)
def test_the_app_is_valid_and_pins_its_images(name: str) -> None:
    app = validate_app(builtin_catalog() / name)
    assert app.requires == ("postgres",) and app.backup_databases == ("postgres",)
    assert all(":" in v.image and not v.image.endswith(":latest") for v in app.versions)
    assert len(app.versions) >= 2  # an upgrade path the lab test walks
    # Every version renders the volumes it backs up and the web Service.
    for version in app.versions:
        objects = render_app(name, version.version)
        for claim in app.backup_volumes:
            find(objects, "PersistentVolumeClaim", claim)
        assert app.web is not None
        find(objects, "Service", app.web.service)


@pytest.mark.parametrize("name", APPS)
def test_pods_run_as_non_root_with_small_requests(name: str) -> None:
    """Pod Security baseline is enforced on the namespace; these apps meet restricted too."""
    for version in load(name).versions:
        objects = render_app(name, version.version)
        for deployment in (o for o in objects if o["kind"] == "Deployment"):
            pod = deployment["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            for c in pod["containers"] + pod.get("initContainers", []):
                assert c["securityContext"]["allowPrivilegeEscalation"] is False
                assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
                memory = c["resources"]["requests"]["memory"]
                assert memory.endswith("Mi") and int(memory[:-2]) <= 256
                assert "memory" in c["resources"]["limits"]


def test_hedgedoc_reads_its_database_and_url_as_the_image_documents() -> None:
    """lib/config/environment.js (1.10.8, 1.11.0): CMD_DB_* fields, CMD_DOMAIN with
    CMD_PROTOCOL_USESSL and CMD_URL_ADDPORT, CMD_SESSION_SECRET; pg reads PGSSLMODE."""
    objects = render_app("hedgedoc")
    pod = pod_of(objects, "hedgedoc")
    values = env(container(pod, "hedgedoc"))
    assert values["CMD_DB_DIALECT"] == "postgres"
    for name, key in [
        ("CMD_DB_HOST", "host"),
        ("CMD_DB_PORT", "port"),
        ("CMD_DB_DATABASE", "database"),
        ("CMD_DB_USERNAME", "username"),
        ("CMD_DB_PASSWORD", "password"),
    ]:
        assert values[name] == ("libresh-postgres", key)
    assert "CMD_DB_URL" not in values  # one way only: the fields
    assert values["PGSSLMODE"] == "disable"  # the embedded server
    assert (values["CMD_DOMAIN"], values["CMD_PROTOCOL_USESSL"], values["CMD_URL_ADDPORT"]) == (
        "hedgedoc.example.org",
        "true",
        "false",
    )
    assert values["CMD_SESSION_SECRET"] == ("libresh-credentials", "session_secret")
    assert values["CMD_IMAGE_UPLOAD_TYPE"] == "filesystem"
    assert values["CMD_ALLOW_ANONYMOUS"] == "false"  # libresh's default
    assert values["CMD_ALLOW_EMAIL_REGISTER"] == "true"
    assert values["CMD_DEFAULT_PERMISSION"] == "editable"
    external = env(
        container(
            pod_of(render_app("hedgedoc", services=EXTERNAL_POSTGRES), "hedgedoc"), "hedgedoc"
        )
    )
    assert external["PGSSLMODE"] == "require"


def test_hedgedoc_listens_answers_health_and_keeps_uploads_as_the_image_does() -> None:
    """debian/Dockerfile: EXPOSE 3000, user 10000:10000; /_health (lib/web/statusRouter.js);
    uploads in /hedgedoc/public/uploads (lib/config/default.js uploadsPath)."""
    objects = render_app("hedgedoc", allow_anonymous=True, uploads_size="20Gi")
    pod = pod_of(objects, "hedgedoc")
    app = container(pod, "hedgedoc")
    assert port_numbers(app) == {"http": 3000}
    assert probe_paths(app) == {
        "startupProbe": ("/_health", "http"),
        "readinessProbe": ("/_health", "http"),
        "livenessProbe": ("/_health", "http"),
    }
    security = pod["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"], security["fsGroup"]) == (
        10000,
        10000,
        10000,
    )
    assert mounts(app, pod) == {"/hedgedoc/public/uploads": "hedgedoc-uploads"}
    claim = find(objects, "PersistentVolumeClaim", "hedgedoc-uploads")
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert env(app)["CMD_ALLOW_ANONYMOUS"] == "true"
    service = find(objects, "Service", "hedgedoc")
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]
    assert [c["name"] for c in pod["initContainers"]] == ["wait-for-database"]
    assert find(objects, "Deployment", "hedgedoc")["spec"]["strategy"] == {"type": "Recreate"}
    assert load("hedgedoc").one_major_at_a_time is False  # umzug migrates from any 1.x


def test_hedgedoc_refuses_an_unknown_default_permission() -> None:
    app = load("hedgedoc")
    parameter = app.parameter("default_permission")
    assert parameter is not None and parameter.pattern is not None
    for value in ["freely", "editable", "limited", "locked", "protected", "private"]:
        assert re.fullmatch(parameter.pattern, value)
    assert not re.fullmatch(parameter.pattern, "public")


def test_listmonk_reads_its_database_from_the_environment_without_a_file() -> None:
    """cmd/main.go: LISTMONK_a__b is a.b, --config '' reads no file; cmd/init.go initDB:
    db.host, port, user, password, database, ssl_mode; app.address for the listener."""
    pod = pod_of(render_app("listmonk"), "listmonk")
    server = container(pod, "listmonk")
    values = env(server)
    for name, key in [
        ("LISTMONK_db__host", "host"),
        ("LISTMONK_db__port", "port"),
        ("LISTMONK_db__database", "database"),
        ("LISTMONK_db__user", "username"),
        ("LISTMONK_db__password", "password"),
    ]:
        assert values[name] == ("libresh-postgres", key)
    assert values["LISTMONK_db__ssl_mode"] == "disable"
    assert values["LISTMONK_app__address"] == "0.0.0.0:9000"
    assert server["command"] == ["./listmonk", "--config", ""]  # not the root entrypoint
    assert server["workingDir"] == "/listmonk"
    assert "LISTMONK_ADMIN_PASSWORD" not in values  # only the installer gets it
    external = pod_of(render_app("listmonk", services=EXTERNAL_POSTGRES), "listmonk")
    assert env(container(external, "listmonk"))["LISTMONK_db__ssl_mode"] == "require"


def test_listmonk_installs_migrates_and_sets_its_url_before_it_starts() -> None:
    """docker-compose.yml's command (--install --idempotent, then --upgrade, --yes), the Super
    Admin from LISTMONK_ADMIN_USER/_PASSWORD (cmd/install.go), app.root_url in settings."""
    pod = pod_of(render_app("listmonk", admin_username="chief"), "listmonk")
    init = {c["name"]: c for c in pod["initContainers"]}
    assert list(init) == ["wait-for-database", "install-or-upgrade", "root-url"]
    setup = init["install-or-upgrade"]
    assert setup["image"] == load("listmonk").latest.image
    assert setup["command"][-1] == (
        "./listmonk --install --idempotent --yes --config '' "
        "&& ./listmonk --upgrade --yes --config ''"
    )
    values = env(setup)
    assert values["LISTMONK_ADMIN_USER"] == "chief"
    assert values["LISTMONK_ADMIN_PASSWORD"] == ("libresh-credentials", "admin_password")
    assert values["LISTMONK_db__host"] == ("libresh-postgres", "host")
    url = env(init["root-url"])
    assert url == {
        "PG_URI": ("libresh-postgres", "uri"),
        "ROOT_URL": "https://listmonk.example.org",
    }
    assert "WHERE key = 'app.root_url'" in init["root-url"]["command"][-1]


def test_listmonk_listens_answers_health_and_keeps_uploads_as_the_image_does() -> None:
    """EXPOSE 9000 (Dockerfile); GET /health in the public group (cmd/handlers.go);
    upload_path "uploads" under WORKDIR /listmonk (schema.sql)."""
    objects = render_app("listmonk", uploads_size="3Gi")
    pod = pod_of(objects, "listmonk")
    server = container(pod, "listmonk")
    assert port_numbers(server) == {"http": 9000}
    assert probe_paths(server) == {
        "startupProbe": ("/health", "http"),
        "readinessProbe": ("/health", "http"),
        "livenessProbe": ("/health", "http"),
    }
    assert mounts(server, pod) == {"/listmonk/uploads": "listmonk-uploads"}
    claim = find(objects, "PersistentVolumeClaim", "listmonk-uploads")
    assert claim["spec"]["resources"]["requests"]["storage"] == "3Gi"
    assert (
        pod["securityContext"]["runAsUser"] == 65534 and pod["securityContext"]["fsGroup"] == 65534
    )
    assert load("listmonk").one_major_at_a_time is False  # --upgrade runs every pending one
    username = load("listmonk").parameter("admin_username")
    assert username is not None and username.pattern is not None
    assert not re.fullmatch(username.pattern, "ab")  # cmd/install.go: at least 3 characters


def test_catalog_list_shows_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["catalog", "list"]) == 0
    out = capsys.readouterr().out
    for name in APPS:
        assert name in out
        assert _run(["catalog", "validate", str(builtin_catalog() / name)]) == 0
