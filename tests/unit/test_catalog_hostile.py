"""Hostile app packages (issue 14, findings 7 and 17): templates that reach libresh's own
objects, Secrets and volumes or widen the instance's isolation, and templates or parameters
made to hang or exhaust libresh. Each is refused by `libresh catalog validate` (and so by
every install, which renders the same way) with exit 2, the file and the object or field
named, no traceback, in well under a second."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from libresh_cli.apps import render
from libresh_cli.apps.schema import nested_quantifier
from libresh_cli.cli.main import _run
from libresh_cli.errors import ExitCode

ROOT = Path(__file__).resolve().parents[2]

APP = """\
schema_version: 1
name: hostile
description: A package trying what it may not.
versions:
  - {version: 1.0.0, image: "example.org/hostile:1.0.0"}
requires: {postgres: {}}
parameters:
  - {name: domain, type: domain, prompt: Domain}
PARAMETERS
"""


def pod(kind: str, spec: str, name: str = "web") -> str:
    """A workload of `kind` whose pod spec is `spec` (flow YAML)."""
    template = f"{{metadata: {{labels: {{app: x}}}}, spec: {spec}}}"
    if kind == "CronJob":
        body = f'{{schedule: "@daily", jobTemplate: {{spec: {{template: {template}}}}}}}'
        return f"apiVersion: batch/v1\nkind: CronJob\nmetadata: {{name: {name}}}\nspec: {body}\n"
    group = "batch/v1" if kind == "Job" else "apps/v1"
    selector = "" if kind == "Job" else "selector: {matchLabels: {app: x}}, "
    return (
        f"apiVersion: {group}\nkind: {kind}\nmetadata: {{name: {name}}}\n"
        f"spec: {{{selector}template: {template}}}\n"
    )


def container(extra: str) -> str:
    return f"{{containers: [{{name: c, image: example.org/x:1, {extra}}}]}}"


def policy(ingress: str) -> str:
    return (
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: open}\n"
        f"spec: {{podSelector: {{}}, policyTypes: [Ingress], ingress: {ingress}}}\n"
    )


CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: NAME}\ndata: {a: b}\n"
SECRET_ENV = "env: [{name: K, valueFrom: {secretKeyRef: {name: SECRET, key: k}}}]"

# case -> (templates, what the message must name besides the template file)
REFUSED: dict[str, tuple[dict[str, str], str]] = {
    "reserved isolate policy": (
        {"a.yaml": policy("[{from: [{podSelector: {}}]}]").replace("open", "libresh-isolate")},
        "NetworkPolicy libresh-isolate: metadata.name: names starting with libresh-",
    ),
    "reserved instance name": (
        {"a.yaml": CONFIG_MAP.replace("NAME", "libresh-instance")},
        "ConfigMap libresh-instance: metadata.name",
    ),
    "reserved credentials Secret": (
        {"a.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: libresh-credentials}\n"},
        "Secret libresh-credentials: metadata.name",
    ),
    "duplicate across templates": (
        {
            "a.yaml": CONFIG_MAP.replace("NAME", "twice"),
            "b.yaml": CONFIG_MAP.replace("NAME", "twice"),
        },
        "ConfigMap twice is declared twice",
    ),
    "duplicate of a libresh service object": (
        {"a.yaml": pod("StatefulSet", container(""), name="postgres")},
        "StatefulSet postgres is declared twice (also by libresh)",
    ),
    "policy rule without from": (
        {"a.yaml": policy("[{}]")},
        "NetworkPolicy open: spec.ingress[0]: a rule without `from`",
    ),
    "policy rule with empty from": (
        {"a.yaml": policy("[{from: []}]")},
        "NetworkPolicy open: spec.ingress[0]",
    ),
    "policy with an empty namespaceSelector": (
        {"a.yaml": policy("[{from: [{podSelector: {}}, {namespaceSelector: {}}]}]")},
        "NetworkPolicy open: spec.ingress[0].from[1].namespaceSelector",
    ),
    "policy with everything in an ipBlock": (
        {"a.yaml": policy("[{from: [{ipBlock: {cidr: 0.0.0.0/0}}]}]")},
        "spec.ingress[0].from[0].ipBlock.cidr",
    ),
    "automount in a Deployment": (
        {"a.yaml": pod("Deployment", "{automountServiceAccountToken: true, containers: []}")},
        "Deployment web: spec.template.spec.automountServiceAccountToken",
    ),
    "automount in a CronJob": (
        {"a.yaml": pod("CronJob", "{automountServiceAccountToken: true, containers: []}")},
        "CronJob web: spec.jobTemplate.spec.template.spec.automountServiceAccountToken",
    ),
    "projected API token": (
        {
            "a.yaml": pod(
                "Job",
                "{containers: [], volumes: [{name: t, projected: {sources: "
                "[{serviceAccountToken: {path: token}}]}}]}",
            )
        },
        "Job web: spec.template.spec.volumes[0].projected.sources[0].serviceAccountToken",
    ),
    "backup repository in envFrom": (
        {
            "a.yaml": pod(
                "Deployment", container("envFrom: [{secretRef: {name: libresh-backup-repository}}]")
            )
        },
        "spec.template.spec.containers[0].envFrom[0].secretRef.name: the Secret "
        "libresh-backup-repository is libresh's",
    ),
    "postgres admin in secretKeyRef": (
        {
            "a.yaml": pod(
                "StatefulSet", container(SECRET_ENV.replace("SECRET", "libresh-postgres-admin"))
            )
        },
        "StatefulSet web: spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef.name",
    ),
    "backup Secret in an init container": (
        {
            "a.yaml": pod(
                "Job",
                "{containers: [], initContainers: [{name: i, image: example.org/x:1, "
                + SECRET_ENV.replace("SECRET", "libresh-backup-s3")
                + "}]}",
            )
        },
        "spec.template.spec.initContainers[0].env[0].valueFrom.secretKeyRef.name",
    ),
    "backup Secret as a volume": (
        {
            "a.yaml": pod(
                "Deployment",
                "{containers: [], volumes: [{name: k, secret: "
                "{secretName: libresh-backup-repository}}]}",
            )
        },
        "spec.template.spec.volumes[0].secret.secretName",
    ),
    "backup Secret in a projected volume": (
        {
            "a.yaml": pod(
                "Deployment",
                "{containers: [], volumes: [{name: k, projected: {sources: "
                "[{secret: {name: libresh-backup-repository}}]}}]}",
            )
        },
        "spec.template.spec.volumes[0].projected.sources[0].secret.name",
    ),
    "backup repository volume": (
        {
            "a.yaml": pod(
                "CronJob",
                "{containers: [], volumes: [{name: r, persistentVolumeClaim: "
                "{claimName: libresh-backup-repository}}]}",
            )
        },
        "volumes[0].persistentVolumeClaim.claimName: the volume libresh-backup-repository",
    ),
    "hostPath volume": (
        {
            "a.yaml": pod(
                "Deployment", "{containers: [], volumes: [{name: h, hostPath: {path: /}}]}"
            )
        },
        "spec.template.spec.volumes[0].hostPath: hostPath volumes",
    ),
    "Ingress certificate into a libresh Secret": (
        {
            "a.yaml": "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\n"
            "spec: {tls: [{hosts: [a.example.org], secretName: libresh-credentials}]}\n"
        },
        "Ingress web: spec.tls[0].secretName",
    ),
    # finding 17: templates made to hang or exhaust memory
    "range too long": (
        {"a.yaml": "{% for i in range(10**9) %}{% endfor %}"},
        "range() of 1000000000 numbers: at most 10000",
    ),
    "nested loops": (
        {
            "a.yaml": "{% for i in range(10000) %}{% for j in range(10000) %}"
            "{% endfor %}{% endfor %}"
        },
        "more than 250000 steps",
    ),
    "recursive macro": (
        {
            "a.yaml": "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
            "{% endmacro %}{{ f(40) }}"
        },
        # The step budget, or on a machine busy enough the time budget, whichever comes first.
        "libresh's limit for one template",
    ),
    "a 3 GB string": ({"a.yaml": "x: {{ 'x' * 3000000000 }}"}, "A repetition (*) is larger"),
    "doubling by concatenation": (
        {
            "a.yaml": "{% set ns = namespace(s='x') %}{% for i in range(64) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
        },
        "A concatenation (~) is larger",
    ),
    "a huge power": ({"a.yaml": "x: {{ 2 ** 100000 }}"}, "a power larger than"),
    "a padding filter": ({"a.yaml": "x: {{ 'x' | center(10**9) }}"}, "the filter center"),
    "a padding method": ({"a.yaml": "x: {{ 'x'.ljust(10**9) }}"}, "The result of ljust()"),
    "a replace amplifier": (
        {"a.yaml": "x: {{ ('x' * 1000000) | replace('x', 'x' * 1000) }}"},
        "the filter replace",
    ),
    "a list of big strings joined": (
        {"a.yaml": "x: {{ (['x' * 1000000] * 100000) | join }}"},
        "A repetition (*) is larger",
    ),
    "a lazy map joined": (
        {"a.yaml": "x: {{ range(10000) | map('center', 100000) | join }}"},
        "The result of the filter map is larger",
    ),
    "a format width": ({"a.yaml": "x: {{ '%999999999d' % 1 }}"}, "A formatted string (%)"),
    "a str.format width": (
        {"a.yaml": "x: {{ '{:>999999999}'.format(1) }}"},
        "The result of format()",
    ),
    "output larger than what YAML reads": (
        {"a.yaml": "{% for i in range(100) %}{{ 'x' * 1000000 }}{% endfor %}"},
        "renders to more than 4 MiB",
    ),
    "lipsum is gone": ({"a.yaml": "x: {{ lipsum(10**6) }}"}, "'lipsum' is undefined"),
}


def _app(tmp_path: Path, templates: dict[str, str], parameters: str = "") -> Path:
    folder = tmp_path / "hostile"
    (folder / "templates").mkdir(parents=True)
    (folder / "app.yaml").write_text(APP.replace("PARAMETERS", parameters))
    for name, text in templates.items():
        (folder / "templates" / name).write_text(text)
    return folder


def _refused(folder: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    started = time.monotonic()
    code = _run(["catalog", "validate", str(folder)])
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert code == ExitCode.BAD_INPUT, output
    assert "Traceback" not in output
    # Refused, not hanging: within the render's own time budget (a wall-clock bound of one
    # second failed on a machine busy with other tests; speed figures live in benchmarks/).
    assert elapsed < render.MAX_RENDER_SECONDS + 2, f"took {elapsed:.2f} s"
    return " ".join(output.split())  # the console wraps long lines


@pytest.mark.parametrize("case", list(REFUSED))
def test_hostile_template_is_refused(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    templates, expected = REFUSED[case]
    folder = _app(tmp_path, templates)
    output = _refused(folder, capsys)
    assert any(f"templates/{name}" in output for name in templates), output
    assert " ".join(expected.split()) in output, output


def test_the_rules_hold_for_install_too(tmp_path: Path) -> None:
    """Installs render through the same function as `catalog validate`."""
    from libresh_cli.apps.catalog import Catalog
    from libresh_cli.apps.instance import Instance
    from libresh_cli.apps.render import RenderError, generated_secret_keys

    folder = _app(tmp_path, {"a.yaml": CONFIG_MAP.replace("NAME", "libresh-isolate")})
    app = Catalog((tmp_path,)).load("hostile")
    secrets = {key: "x" * length for key, length in generated_secret_keys(app).items()}
    instance = Instance("h1", app, app.latest, {"domain": "h.example.org"}, secrets)
    with pytest.raises(RenderError, match=r"a\.yaml: ConfigMap libresh-isolate"):
        render.render(instance)
    assert folder.is_dir()


def test_a_template_linking_outside_the_package_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "elsewhere.yaml"
    outside.write_text(CONFIG_MAP.replace("NAME", "stolen"))
    folder = _app(tmp_path, {"a.yaml": CONFIG_MAP.replace("NAME", "fine")})
    (folder / "templates" / "b.yaml").symlink_to(outside)
    output = _refused(folder, capsys)
    assert "templates/b.yaml: the template is a link to" in output
    assert "outside the app's folder" in output


def test_a_templates_folder_linking_outside_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.yaml").write_text(CONFIG_MAP.replace("NAME", "x"))
    folder = tmp_path / "hostile"
    folder.mkdir()
    (folder / "app.yaml").write_text(APP.replace("PARAMETERS", ""))
    (folder / "templates").symlink_to(other, target_is_directory=True)
    assert "outside the app's folder" in _refused(folder, capsys)


def test_an_app_yaml_linking_outside_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _app(tmp_path, {"a.yaml": CONFIG_MAP.replace("NAME", "x")})
    real = tmp_path / "real.yaml"
    (folder / "app.yaml").rename(real)
    (folder / "app.yaml").symlink_to(real)
    assert "app.yaml: (file): a link to outside the app's folder" in _refused(folder, capsys)


def test_a_link_inside_the_package_is_fine(tmp_path: Path) -> None:
    from libresh_cli.apps.catalog import validate_app

    folder = _app(tmp_path, {})
    (folder / "shared.yaml").write_text(CONFIG_MAP.replace("NAME", "shared"))
    (folder / "templates" / "a.yaml").symlink_to(folder / "shared.yaml")
    assert validate_app(folder).name == "hostile"


def test_the_readable_libresh_secrets_stay_allowed(tmp_path: Path) -> None:
    from libresh_cli.apps.catalog import validate_app

    env = ", ".join(
        f"{{name: K{n}, valueFrom: {{secretKeyRef: {{name: {s}, key: k}}}}}}"
        for n, s in enumerate(["libresh-postgres", "libresh-redis", "libresh-credentials"])
    )
    folder = _app(
        tmp_path,
        {
            "a.yaml": pod("Deployment", container(f"env: [{env}]")),
            "b.yaml": policy(
                "[{from: [{namespaceSelector: {matchLabels: {a: b}}}, {podSelector: {}}]}]"
            ),
        },
    )
    (folder / "app.yaml").write_text(
        APP.replace("PARAMETERS", "").replace("{postgres: {}}", "{postgres: {}, redis: {}}")
    )
    assert validate_app(folder).name == "hostile"


PARAMETER_CASES = {
    "catastrophic pattern": (
        "  - {name: code, type: string, prompt: Code, pattern: '(a+)+$'}",
        "parameters[1].pattern: a repeated group that itself repeats",
    ),
    "star star pattern": (
        "  - {name: code, type: string, prompt: Code, pattern: '(ab*)*c'}",
        "parameters[1].pattern",
    ),
    "long pattern": (
        f"  - {{name: code, type: string, prompt: Code, pattern: '{'a' * 201}'}}",
        "parameters[1].pattern: longer than 200 characters",
    ),
    "default of the wrong type": (
        "  - {name: size, type: integer, prompt: Size, default: big}",
        "parameters[1].default: 'big' is not valid: expected a whole number",
    ),
    "default out of range": (
        "  - {name: size, type: integer, prompt: Size, default: 3, min: 5}",
        "parameters[1].default: 3 is not valid: the smallest allowed is 5",
    ),
    "default against the pattern": (
        "  - {name: code, type: string, prompt: Code, default: xyz, pattern: '[a-c]+'}",
        "parameters[1].default: 'xyz' is not valid: it must match [a-c]+",
    ),
    "default not an email": (
        "  - {name: mail, type: email, prompt: Mail, default: nobody}",
        "parameters[1].default: 'nobody' is not valid: expected an email address",
    ),
}


@pytest.mark.parametrize("case", list(PARAMETER_CASES))
def test_hostile_parameter_is_refused(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parameters, expected = PARAMETER_CASES[case]
    folder = _app(tmp_path, {"a.yaml": CONFIG_MAP.replace("NAME", "x")}, parameters)
    output = _refused(folder, capsys)
    assert "hostile/app.yaml" in output and expected in output, output


def test_nested_quantifier_heuristic() -> None:
    for bad in ["(a+)+$", "(a*)*", "(a+)*", "(?:ab+)+", "((a)+)+", "(a{2,5}){3,}"]:
        assert nested_quantifier(bad), bad
    for fine in ["^[a-zA-Z0-9_.@-]{1,64}$", "^[0-9]+(Mi|Gi|Ti)$", "(ab)+", "[(]a+[)]+", r"\(a+\)+"]:
        assert not nested_quantifier(fine), fine


def test_long_values_are_refused_before_matching() -> None:
    from libresh_cli.apps.model import Parameter
    from libresh_cli.apps.params import problem_with

    code = Parameter("code", "string", "Code", pattern="[a-z]+(x|y)")
    started = time.monotonic()
    assert problem_with(code, "a" * 100_000) == "it is longer than 1000 characters"
    mail = Parameter("mail", "email", "Mail")
    assert problem_with(mail, "a" * 5000 + "@") == "it is longer than 1000 characters"
    assert time.monotonic() - started < 0.1
    assert problem_with(code, "abcx") is None


def test_a_slow_template_is_stopped_by_the_clock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steps that each take long are stopped by the render time budget (5 s, shortened
    here): sorting a large list over and over."""
    monkeypatch.setattr(render, "MAX_RENDER_SECONDS", 0.3)
    folder = _app(
        tmp_path,
        {
            "a.yaml": "{% set big = range(10000) | list %}{% for i in range(10000) %}"
            "{{ big | sort | first }}{% endfor %}"
        },
    )
    assert "takes longer than 0.3 s to render" in _refused(folder, capsys)


def test_shipped_apps_and_fixtures_stay_valid(capsys: pytest.CaptureFixture[str]) -> None:
    fixtures = sorted(str(p) for p in (ROOT / "tests" / "fixtures" / "catalog").iterdir())
    paths = [str(ROOT / "apps" / "nextcloud"), str(ROOT / "apps" / "vaultwarden"), *fixtures]
    assert _run(["catalog", "validate", *paths]) == 0, capsys.readouterr().err
    assert capsys.readouterr().err.count("is valid") == len(paths)


def test_shipped_templates_render_far_within_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The limits leave the real apps plenty of room: a hundredth of the steps does."""
    from libresh_cli.apps.catalog import validate_app

    monkeypatch.setattr(render, "MAX_RENDER_STEPS", render.MAX_RENDER_STEPS // 100)
    for name in ("nextcloud", "vaultwarden"):
        validate_app(ROOT / "apps" / name)
