"""apps/README.md, the reference of the package format, cannot rot: its worked example is a
package `libresh catalog validate` accepts, every field libresh reads is documented there, and
every problem `catalog validate` reports names a section of it that exists."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from libresh_cli.apps import model, render, schema
from libresh_cli.apps.catalog import validate_app
from libresh_cli.apps.hooks import hook_job
from libresh_cli.apps.instance import Instance
from libresh_cli.apps.schema import REFERENCE, SECTIONS, CatalogInvalidError, Problem
from libresh_cli.cli.main import _run

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / REFERENCE
EXAMPLE = re.compile(r"<!-- example: (?P<path>[^ ]+) -->\n```yaml\n(?P<text>.*?)```", re.S)


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub makes of the headings: lowercase, punctuation dropped, spaces as -."""
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def write_example(catalog: Path) -> Path:
    """The worked example's files, copied from the README into `catalog`."""
    files = {m["path"]: m["text"] for m in EXAMPLE.finditer(README.read_text())}
    assert set(files) == {"miniflux/app.yaml", "miniflux/templates/miniflux.yaml"}
    for path, text in files.items():
        (catalog / path).parent.mkdir(parents=True, exist_ok=True)
        (catalog / path).write_text(text)
    return catalog / "miniflux"


def test_the_worked_example_is_a_valid_package(tmp_path: Path) -> None:
    folder = write_example(tmp_path)
    app = validate_app(folder)
    assert app.requires == ("postgres",) and app.backup_databases == ("postgres",)
    assert [v.version for v in app.versions] == ["2.2.19", "2.3.3"]
    assert _run(["catalog", "validate", str(folder)]) == 0
    # What the README says an install makes of it.
    secrets = render.generated_secret_keys(app)
    assert set(secrets) == {"admin_password", "postgres_password", "postgres_superuser_password"}
    instance = Instance(
        "rss",
        app,
        app.latest,
        {"domain": "rss.example.org", "admin_username": "admin", "polling_frequency": 60},
        {key: "x" * length for key, length in secrets.items()},
    )
    objects = render.render(instance)
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert ("StatefulSet", "postgres") in names and ("Secret", "libresh-postgres") in names
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "libresh-postgres",
        "key": "uri",
    }
    assert env["POLLING_FREQUENCY"]["value"] == "60"
    assert env["BASE_URL"]["value"] == "https://rss.example.org"
    # The post_restore step runs with the app's image and environment.
    step = app.hooks["post_restore"][0]
    job = hook_job("post_restore", step, instance, objects, 1)
    hooked = job["spec"]["template"]["spec"]["containers"][0]
    assert hooked["image"] == "docker.io/miniflux/miniflux:2.3.3"
    assert hooked["command"] == ["/usr/bin/miniflux", "-flush-sessions"]
    assert "DATABASE_URL" in {e["name"] for e in hooked["env"]}


def test_every_field_and_word_of_the_format_is_documented() -> None:
    text = README.read_text()
    words = {
        *schema.TOP_FIELDS,
        *schema.PARAMETER_FIELDS,
        *model.HOOK_PHASES,
        *model.PARAMETER_TYPES,
        *model.ARCHITECTURES,
        *model.SERVICE_KINDS,
        "one_major_at_a_time",
        "maintained_until",
        "workloads",
        "timeout",
        "command",
        "volumes",
        "run_as_user",
        "scheduled",
        "databases",
        "service",
        "port",
        "apache_body_limit",
        "php_size",
        render.CREDENTIALS_SECRET,
        "libresh-postgres",
        "libresh-redis",
        "libresh-isolate",
        render.CLUSTER_ISSUER,
    }
    code = re.findall(r"`([^`\n]+)`", text)  # what the README writes as code
    missing = sorted(w for w in words if not any(re.search(rf"\b{w}\b", c) for c in code))
    assert not missing, f"{REFERENCE} does not mention {missing}"
    for _, kind in render.ALLOWED_KINDS:
        assert kind in text
    for key in ("host", "port", "database", "username", "password", "uri"):
        assert f"`{key}`" in text


def test_every_name_of_the_template_context_is_documented(tmp_path: Path) -> None:
    text = README.read_text()
    app = validate_app(write_example(tmp_path))
    context = render.template_context(Instance("rss", app, app.latest, {}))
    for name, value in context.items():
        if isinstance(value, dict) and name not in ("params", "services", "labels"):
            missing = [key for key in value if f"`{name}.{key}`" not in text]
            assert not missing, f"{REFERENCE} does not document {name}.{missing}"
        else:
            assert f"`{name}" in text, f"{REFERENCE} does not document {name}"


def test_every_section_named_by_an_error_exists() -> None:
    text = README.read_text()
    present = anchors(text)
    source = Path(render.__file__).read_text()
    named = set(SECTIONS.values()) | {"the-app-definition", "templates"}
    named |= set(re.findall(r'section="([^"]+)"', source))
    named |= set(re.findall(r'"(render-limits|template-context)"', source))
    assert named - present == set()
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links - present == set(), "links to missing sections"


APP = """\
schema_version: 1
name: broken
description: x
versions:
  - {version: 1.0.0, image: "example.org/x:1.0.0"}
requires: {postgres: {}}
parameters:
  - {name: domain, type: domain}
"""
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec: {containers: [{name: c, image: example.org/x:1}]}
"""


def problems(tmp_path: Path, definition: str = APP, template: str = DEPLOYMENT) -> list[Problem]:
    folder = tmp_path / "broken"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "templates").mkdir(parents=True)
    (folder / "app.yaml").write_text(definition)
    (folder / "templates" / "web.yaml").write_text(template)
    with pytest.raises(CatalogInvalidError) as raised:
        validate_app(folder)
    return raised.value.problems


@pytest.mark.parametrize(
    ("definition", "field", "section"),
    [
        (APP + "homepage: [x]\n", "homepage", "about-the-app"),
        (
            APP.replace("versions:\n", 'versions:\n  - {version: 2.0.0, image: "e.org/x:2.0.0"}\n'),
            "versions[1].version",
            "versions",
        ),
        (
            APP + "upgrade: {one_major_at_a_time: maybe}\n",
            "upgrade.one_major_at_a_time",
            "upgrades",
        ),
        (
            APP + "  - {name: size, type: integer, min: 5, max: 1}\n",
            "parameters[1].max",
            "parameters",
        ),
        (APP + "  - {name: Bad, type: string}\n", "parameters[1].name", "parameters"),
        (APP.replace("{postgres: {}}", "{mysql: {}}"), "requires.mysql", "backing-services"),
        (APP + "health: {workloads: [Deployment/nope]}\n", "health.workloads", "health"),
        (APP + "hooks: {pre_install: []}\n", "hooks.pre_install", "hooks"),
        (
            APP + "hooks: {post_install: [{name: x, job: {command: ls}}]}\n",
            "hooks.post_install",
            "hooks",
        ),
        (APP + "backup: {volumes: [data]}\n", "backup.volumes", "backups"),
        (APP + "backup: {databases: [redis]}\n", "backup.databases[0]", "backups"),
        (
            APP.replace("{postgres: {}}", "{}") + "backup: {databases: [postgres]}\n",
            "backup.databases[0]",
            "backups",
        ),
        (APP + "web: {service: nope, port: 80}\n", "web.service", "web"),
    ],
)
def test_definition_problems_name_their_section(
    tmp_path: Path, definition: str, field: str, section: str
) -> None:
    found = [p for p in problems(tmp_path, definition) if p.field.startswith(field)]
    assert found, problems(tmp_path, definition)
    assert found[0].see == f"{REFERENCE}#{section}"
    assert f"(see {REFERENCE}#{section})" in str(found[0])


@pytest.mark.parametrize(
    ("template", "section"),
    [
        ("data: {{ params.nope }}\n", "template-context"),
        ("{% for x in range(100000) %}{% endfor %}\n", "render-limits"),
        ("{% if %}\n", "templates"),
        ("a: {{ 'ten' | php_size }}\n", "filters"),
        ("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n", "allowed-kinds"),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: libresh-x}\n",
            "what-templates-may-not-do",
        ),
        (
            DEPLOYMENT.replace(
                "spec: {containers", "spec: {volumes: [{name: h, hostPath: {path: /}}], containers"
            ),
            "what-templates-may-not-do",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: postgres}\n",
            "what-templates-may-not-do",
        ),
    ],
)
def test_template_problems_name_their_section(tmp_path: Path, template: str, section: str) -> None:
    (found,) = problems(tmp_path, template=template)
    assert found.field == "version 1.0.0"
    assert found.see == f"{REFERENCE}#{section}", found
