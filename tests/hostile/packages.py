"""Hostile app packages for the corpus: app.yaml with wrong types, missing and unknown fields,
bad versions and patterns; templates with every kind of Jinja error, budgets overrun, objects
of the wrong shape and objects an app may not declare; links out of the package. Each is
checked by `libresh catalog validate`, which renders every version as an install does.

The template and parameter refusals of test_catalog_hostile and the hostile YAML of
test_yaml_bounds are taken from there, run here as the real command."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from tests.hostile.harness import Case
from tests.unit.test_catalog_hostile import APP, CONFIG_MAP, PARAMETER_CASES, REFUSED
from tests.unit.test_yaml_bounds import HOSTILE

DEMO = Path(__file__).resolve().parents[1] / "fixtures" / "catalog" / "demo"
VALIDATE = ("catalog", "validate", "{tmp}/evil")
BASE: dict[str, Any] = {
    "schema_version": 1,
    "name": "evil",
    "description": "A package trying what it may not.",
    "versions": [{"version": "1.0.0", "image": "example.org/evil:1.0.0"}],
    "parameters": [{"name": "domain", "type": "domain", "prompt": "Domain"}],
}
TEMPLATE = CONFIG_MAP.replace("NAME", "fine")


def app_yaml(**changes: Any) -> str:
    """BASE with fields replaced (None removes one)."""
    data = {**BASE, **changes}
    return yaml.safe_dump({k: v for k, v in data.items() if v is not None}, sort_keys=False)


def package(
    case_id: str, names: str, app: str | bytes | None = None, **templates: str | bytes
) -> Case:
    files: dict[str, str | bytes] = {"evil/app.yaml": app_yaml() if app is None else app}
    for name, text in (templates or {"a": TEMPLATE}).items():
        files[f"evil/templates/{name}.yaml"] = text
    return Case(f"package: {case_id}", VALIDATE, names, files)


def parameter(case_id: str, names: str, **fields: Any) -> Case:
    entry = {"name": "extra", "type": "string", "prompt": "Extra", **fields}
    entry = {k: v for k, v in entry.items() if v is not None}
    return package(case_id, names, app_yaml(parameters=[*BASE["parameters"], entry]))


def hook(case_id: str, names: str, step: Any) -> Case:
    return package(case_id, names, app_yaml(hooks={"post_install": [step]}))


def template(case_id: str, names: str, text: str | bytes) -> Case:
    """A template of the package, whose refusal must name it and say `names`."""
    return replace(package(case_id, "templates/a.yaml", None, a=text), also=(names,))


def _deployment(spec: str) -> str:
    return f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec: {spec}\n"


APP_YAML = [
    package("app.yaml is a list", "(top level): expected a mapping of fields", "- a\n- b\n"),
    package("app.yaml is empty", "(top level): expected a mapping of fields", ""),
    package("name is a number", "name: expected text", app_yaml(name=5)),
    package("name in capitals", "name: 'Evil' is not", app_yaml(name="Evil")),
    package("name not the folder's", "name: must match the folder name", app_yaml(name="good")),
    package("name missing", "name: missing (required)", app_yaml(name=None)),
    package("description missing", "description: missing", app_yaml(description=None)),
    package("description a list", "description: expected text", app_yaml(description=[1])),
    package("homepage a number", "homepage: expected text", app_yaml(homepage=5)),
    package("schema_version 2", "schema_version: this libresh reads", app_yaml(schema_version=2)),
    package("unknown top field", "colour: unknown field", app_yaml(colour="red")),
    package("versions a string", "versions: expected a list", app_yaml(versions="1.0.0")),
    package("versions empty", "versions: at least one version", app_yaml(versions=[])),
    package("versions missing", "versions: missing (required)", app_yaml(versions=None)),
    package("version a number", "versions[0]: expected a mapping", app_yaml(versions=[5])),
    package(
        "version of two parts",
        "versions[0].version: '1.0' is not MAJOR.MINOR.PATCH",
        app_yaml(versions=[{"version": "1.0", "image": "example.org/evil:1.0"}]),
    ),
    package(
        "version a float",
        "versions[0].version: expected text",
        app_yaml(versions=[{"version": 1.0, "image": "example.org/evil:1.0"}]),
    ),
    package(
        "image without a tag",
        "versions[0].image: 'example.org/evil' has no tag",
        app_yaml(versions=[{"version": "1.0.0", "image": "example.org/evil"}]),
    ),
    package(
        "image latest",
        "versions[0].image: 'latest' is not pinned",
        app_yaml(versions=[{"version": "1.0.0", "image": "example.org/evil:latest"}]),
    ),
    package(
        "image with a space",
        "versions[0].image: 'evil image:1' is not",
        app_yaml(versions=[{"version": "1.0.0", "image": "evil image:1"}]),
    ),
    package(
        "versions out of order",
        "versions[1].version: 1.0.0 must be newer than 2.0.0",
        app_yaml(
            versions=[
                {"version": "2.0.0", "image": "example.org/evil:2"},
                {"version": "1.0.0", "image": "example.org/evil:1"},
            ]
        ),
    ),
    package(
        "version field unknown",
        "versions[0].digest: unknown field",
        app_yaml(versions=[{"version": "1.0.0", "image": "example.org/e:1", "digest": "x"}]),
    ),
    package(
        "maintained_until not a date",
        "versions[0].maintained_until: expected a date",
        app_yaml(
            versions=[{"version": "1.0.0", "image": "example.org/e:1", "maintained_until": 3}]
        ),
    ),
    package(
        "maintained_until an impossible date",
        "app.yaml: (file)",
        app_yaml().replace("image:", "maintained_until: 2024-13-45\n  image:"),
    ),
    package(
        "architectures a string", "architectures: expected a list", app_yaml(architectures="x")
    ),
    package("architecture unknown", "architectures[0]: 'sparc'", app_yaml(architectures=["sparc"])),
    package("parameters a string", "parameters: expected a list", app_yaml(parameters="domain")),
    package("parameter a string", "parameters[0]: expected a mapping", app_yaml(parameters=["x"])),
    parameter("parameter type unknown", "parameters[1].type: 'colour' is not one", type="colour"),
    parameter("parameter type missing", "parameters[1].type: missing", type=None),
    parameter("parameter name with a space", "parameters[1].name: 'bad name'", name="bad name"),
    parameter(
        "parameter declared twice", "parameters[1].name: 'domain' is declared", name="domain"
    ),
    parameter("parameter field unknown", "parameters[1].colour: unknown field", colour="red"),
    parameter("parameter prompt a list", "parameters[1].prompt: expected text", prompt=["a"]),
    parameter("parameter secret yes", "parameters[1].secret: expected 'generate'", secret="yes"),
    parameter("parameter length short", "parameters[1].length: expected a whole", length=5),
    parameter("parameter length text", "parameters[1].length: expected a whole", length="x"),
    parameter("parameter pattern a number", "parameters[1].pattern: expected text", pattern=5),
    parameter("parameter pattern broken", "parameters[1].pattern: not a valid", pattern="("),
    parameter("parameter min text", "parameters[1].min: expected a whole", type="integer", min="a"),
    parameter(
        "parameter max a list", "parameters[1].max: expected a whole", type="integer", max=[]
    ),
    parameter("parameter min above max", "parameters[1].max", type="integer", min=5, max=1),
    parameter("parameter required text", "parameters[1].required: expected true", required="x"),
    parameter(
        "parameter default too long",
        "parameters[1].default: the default is not valid: it is longer than",
        default="a" * 5000,
        pattern="[a-z]+",
        secret="generate",
        type="password",
    ),
    package("requires a list", "requires: expected a mapping", app_yaml(requires=["postgres"])),
    package("requires unknown", "requires.mysql: unknown field", app_yaml(requires={"mysql": {}})),
    package(
        "requires text",
        "requires.postgres: expected a mapping",
        app_yaml(requires={"postgres": "y"}),
    ),
    package("resources a string", "resources: expected a mapping", app_yaml(resources="big")),
    package("resources a list", "resources.cpu", app_yaml(resources={"cpu": [1]})),
    package("upgrade a string", "upgrade: expected a mapping", app_yaml(upgrade="yes")),
    package(
        "one_major_at_a_time text",
        "upgrade.one_major_at_a_time: expected true or false",
        app_yaml(upgrade={"one_major_at_a_time": "yes"}),
    ),
    package("health a list", "health: expected a mapping", app_yaml(health=[])),
    package(
        "health workload a Pod",
        "health.workloads[0]: expected Deployment/NAME",
        app_yaml(health={"workloads": ["Pod/web"]}),
    ),
    package(
        "health workload not rendered",
        "health.workloads: Deployment/web is not rendered",
        app_yaml(health={"workloads": ["Deployment/web"]}),
    ),
    package(
        "health timeout 1", "health.timeout: expected a whole", app_yaml(health={"timeout": 1})
    ),
    package("hooks a list", "hooks: expected a mapping", app_yaml(hooks=[])),
    package(
        "hook phase unknown", "hooks.sometimes: unknown field", app_yaml(hooks={"sometimes": []})
    ),
    package(
        "hook steps a string",
        "hooks.post_install: expected a list",
        app_yaml(hooks={"post_install": "x"}),
    ),
    hook(
        "hook command a string",
        "hooks.post_install[0].job.command: expected a list",
        {"name": "x", "job": {"command": "rm -rf /"}},
    ),
    hook(
        "hook name bad",
        "hooks.post_install[0].name: 'X Y'",
        {"name": "X Y", "job": {"command": ["true"]}},
    ),
    hook("hook job missing", "hooks.post_install[0].job: missing", {"name": "x"}),
    hook(
        "hook volumes text",
        "hooks.post_install[0].job.volumes: expected true or false",
        {"name": "x", "job": {"command": ["true"], "volumes": "no"}},
    ),
    hook(
        "hook user negative",
        "hooks.post_install[0].job.run_as_user: expected a whole",
        {"name": "x", "job": {"command": ["true"], "run_as_user": -1}},
    ),
    hook(
        "hook timeout huge",
        "hooks.post_install[0].job.timeout: expected a whole",
        {"name": "x", "job": {"command": ["true"], "timeout": 10**12}},
    ),
    package("web a string", "web: expected a mapping", app_yaml(web="svc")),
    package(
        "web port 0", "web.port: expected a whole", app_yaml(web={"service": "web", "port": 0})
    ),
    package(
        "web service not rendered",
        "web.service: Service web is not rendered",
        app_yaml(web={"service": "web", "port": 80}),
    ),
    package(
        "backup volumes a string",
        "backup.volumes: expected a list",
        app_yaml(backup={"volumes": "data"}),
    ),
    package("backup volume a mapping", "backup.volumes", app_yaml(backup={"volumes": [{"a": 1}]})),
    Case(
        "package: no templates",
        VALIDATE,
        "(templates): no templates",
        {"evil/app.yaml": app_yaml()},
    ),
    Case(
        "package: no app.yaml",
        VALIDATE,
        "{tmp}/evil has no app.yaml",
        {"evil/templates/a.yaml": TEMPLATE},
    ),
    Case("package: app.yaml is a folder", VALIDATE, "has no app.yaml", {"evil/app.yaml/x": "x"}),
]
TEMPLATES = [
    template("syntax error", ":1: the template failed", "{% if %}\n"),
    template("unclosed expression", "the template failed", "x: {{ params.domain\n"),
    template("unknown filter", "the template failed: No filter named", "x: {{ 1 | nope }}\n"),
    template("unknown test", "the template failed", "x: {{ 1 is nope }}\n"),
    template("undefined name", "the template failed: 'nothing' is undefined", "x: {{ nothing }}\n"),
    template("undefined field", "the template failed", "x: {{ params.nothing }}\n"),
    template("unsafe attribute", "the template failed", "x: {{ ''.__class__.__mro__ }}\n"),
    template("text times text", "the template failed: TypeError", "x: {{ 'a' * 'b' }}\n"),
    template("text minus a number", "the template failed", "x: {{ 'a' - 1 }}\n"),
    template(
        "division by zero", "a.yaml:1: the template failed: ZeroDivisionError", "x: {{ 1 / 0 }}\n"
    ),
    template("integer division by zero", "the template failed", "x: {{ 1 // 0 }}\n"),
    template("modulo by zero", "the template failed", "x: {{ 1 % 0 }}\n"),
    template("too few format arguments", "the template failed", "x: {{ '%s %s' % 1 }}\n"),
    template("format index missing", "the template failed", "x: {{ '{0}'.format() }}\n"),
    template("dictsort of a list", "the template failed", "x: {{ [1, 2] | dictsort }}\n"),
    template("range of step 0", "the template failed", "x: {{ range(1, 5, 0) }}\n"),
    template("list index out of range", "the template failed", "x: {{ [1][5] }}\n"),
    template("unhashable set item", "the template failed", "x: {{ [[1]] | unique | list }}\n"),
    template("include", "cannot include, import or extend", "{% include 'other.yaml' %}\n"),
    template("import", "cannot include, import or extend", "{% import 'other.yaml' as o %}\n"),
    template("from import", "the template failed", "{% from 'other.yaml' import x %}\n"),
    template("extends", "cannot include, import or extend", "{% extends 'other.yaml' %}\n"),
    template(
        "endless recursion",
        "the template failed",
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}\n",
    ),
    template("raw not closed", "the template failed", "{% raw %}\n"),
    template("renders bad YAML", " (rendered)", "a: [\n"),
    template("renders a list", "every document must be an object", "- a\n- b\n"),
    template("renders text", "every document must be an object", "hello\n"),
    template("no kind", "None (v1) is not allowed", "apiVersion: v1\nmetadata: {name: x}\n"),
    template(
        "no apiVersion",
        "ConfigMap (None) is not allowed",
        "kind: ConfigMap\nmetadata: {name: x}\n",
    ),
    template(
        "a Pod", "Pod (v1) is not allowed", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n"
    ),
    template(
        "a ClusterRole",
        "ClusterRole (rbac.authorization.k8s.io/v1) is not allowed",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: x}\n",
    ),
    template(
        "a Namespace",
        "Namespace (v1) is not allowed",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n",
    ),
    template(
        "kind a list",
        "is not allowed in an app",
        "apiVersion: v1\nkind: [ConfigMap]\nmetadata: {name: x}\n",
    ),
    template(
        "metadata a string", "ConfigMap: metadata", "apiVersion: v1\nkind: ConfigMap\nmetadata: x\n"
    ),
    template(
        "metadata a list", "ConfigMap: metadata", "apiVersion: v1\nkind: ConfigMap\nmetadata: [x]\n"
    ),
    template(
        "metadata missing", "ConfigMap: metadata", "apiVersion: v1\nkind: ConfigMap\ndata: {}\n"
    ),
    template("name a number", "ConfigMap 5: metadata.name", CONFIG_MAP.replace("NAME", "5")),
    template("name a mapping", "metadata.name", CONFIG_MAP.replace("NAME", "{a: b}")),
    template(
        "name with capitals", "ConfigMap Web: metadata.name", CONFIG_MAP.replace("NAME", "Web")
    ),
    template("name with a slash", "metadata.name", CONFIG_MAP.replace("NAME", "'a/b'")),
    template(
        "labels a list",
        "ConfigMap x: metadata.labels",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, labels: [a, b]}\n",
    ),
    template(
        "labels a string",
        "ConfigMap x: metadata.labels",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, labels: a}\n",
    ),
    template(
        "annotations a list",
        "ConfigMap x: metadata.annotations",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, annotations: [a]}\n",
    ),
    template("spec a list", "Deployment web: spec", _deployment("[a, b]")),
    template("spec a string", "Deployment web: spec", _deployment("hello")),
    template(
        "pod template a list", "Deployment web: spec.template", _deployment("{template: [a]}")
    ),
    template(
        "pod template labels a list",
        "Deployment web: spec.template.metadata.labels",
        _deployment("{template: {metadata: {labels: [a]}, spec: {containers: []}}}"),
    ),
    template(
        "pod spec a string",
        "Deployment web: spec.template.spec",
        _deployment("{template: {spec: x}}"),
    ),
    template(
        "job template a string",
        "CronJob c: spec.jobTemplate",
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec: {jobTemplate: x}\n",
    ),
]
HOSTILE_APP = APP.replace("name: hostile", "name: evil")


def _reused_template(case_id: str, files: dict[str, str], expected: str) -> Case:
    first = next(iter(files))
    case = package(
        f"template {case_id}",
        f"templates/{first}",
        HOSTILE_APP.replace("PARAMETERS", ""),
        **{name.removesuffix(".yaml"): text for name, text in files.items()},
    )
    return replace(case, also=(" ".join(expected.split()),))


def _reused_parameter(case_id: str, parameters: str, expected: str) -> Case:
    case = package(
        f"parameter {case_id}", "evil/app.yaml", HOSTILE_APP.replace("PARAMETERS", parameters)
    )
    return replace(case, also=(expected,))


REUSED = [
    *(_reused_template(case_id, files, expected) for case_id, (files, expected) in REFUSED.items()),
    *(
        _reused_parameter(c, parameters, expected)
        for c, (parameters, expected) in PARAMETER_CASES.items()
    ),
    *(
        package(f"app.yaml {kind}", "{tmp}/evil/app.yaml", content)
        for kind, content in HOSTILE.items()
    ),
    *(template(kind, "", content) for kind, content in HOSTILE.items()),
]
LINKS = [
    Case(
        "package: template linking outside",
        VALIDATE,
        "templates/b.yaml: the template is a link to",
        {
            "evil/app.yaml": app_yaml(),
            "evil/templates/a.yaml": TEMPLATE,
            "elsewhere.yaml": TEMPLATE,
        },
        links={"evil/templates/b.yaml": "{tmp}/elsewhere.yaml"},
    ),
    Case(
        "package: templates folder linking outside",
        VALIDATE,
        "outside the app's folder",
        {"evil/app.yaml": app_yaml(), "other/a.yaml": TEMPLATE},
        links={"evil/templates": "{tmp}/other"},
    ),
    Case(
        "package: app.yaml linking outside",
        VALIDATE,
        "app.yaml: (file): a link to outside the app's folder",
        {"real.yaml": app_yaml(), "evil/templates/a.yaml": TEMPLATE},
        links={"evil/app.yaml": "{tmp}/real.yaml"},
    ),
    Case(
        "package: app.yaml linking to /dev/zero",
        VALIDATE,
        "{tmp}/evil has no app.yaml",
        {"evil/templates/a.yaml": TEMPLATE},
        links={"evil/app.yaml": "/dev/zero"},
    ),
]
PIPES = [
    Case(
        "package: template a named pipe",
        VALIDATE,
        "templates/b.yaml: it is not a regular file",
        {"evil/app.yaml": app_yaml(), "evil/templates/a.yaml": TEMPLATE},
        fifos=("evil/templates/b.yaml",),
    ),
    Case("package: app.yaml a named pipe", VALIDATE, "has no app.yaml", fifos=("evil/app.yaml",)),
]
BROKEN_BESIDE_GOOD = Case(
    "package: one broken app in catalog list",
    ("--catalog", "{tmp}/catalog", "catalog", "list"),
    "{tmp}/catalog/evil/app.yaml",
    {
        "catalog/evil/app.yaml": "name: [\n",
        "catalog/good/app.yaml": app_yaml(name="good", description="The good one."),
        "catalog/good/templates/a.yaml": TEMPLATE,
    },
    code=0,  # the others are listed; the broken one is named on stderr
    also=("The good one.", "Left out of the list"),
)
CASES = [*APP_YAML, *TEMPLATES, *REUSED, *LINKS, *PIPES, BROKEN_BESIDE_GOOD]
