"""Hostile YAML and names with a trailing newline: every kind of file libresh reads goes through
the bounded loader (libresh_cli.yamlfile), and every validating pattern matches the whole value.

Each refusal: exit code 2, a message naming the file or option, no traceback, in under a second.
"""

from __future__ import annotations

import itertools
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from libresh_cli import yamlfile
from libresh_cli.apps.model import Parameter
from libresh_cli.apps.params import coerce, read_values_file
from libresh_cli.cli.main import _run
from libresh_cli.errors import BadInputError, ExitCode
from libresh_cli.settings import Paths

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "tests" / "fixtures" / "catalog" / "demo"
LETTERS = "abcdefghi"
# Nine anchors of nine aliases each: 9**9 (387 million) nodes once expanded.
ALIAS_BOMB = (
    "a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
        for previous, name in itertools.pairwise(LETTERS)
    )
).encode()
DEEP_FLOW = ("[" * 5000 + "]" * 5000 + "\n").encode()
DEEP_BLOCK = ("- " * 5000 + "x\n").encode()
NOT_UTF8 = b"name: caf\xe9\nkind: ConfigMap\n"
HOSTILE = {
    "alias bomb": ALIAS_BOMB,
    "5000-deep flow nesting": DEEP_FLOW,
    "5000-deep block nesting": DEEP_BLOCK,
    "not UTF-8": NOT_UTF8,
}
KINDS = ["app.yaml", "template", "values file", "cluster file", "kubeconfig"]


@pytest.fixture(scope="module", autouse=True)
def _kubernetes_client_imported() -> None:
    """The kubernetes client's first import takes a while; time libresh, not the import."""
    import libresh_cli.kube.client  # noqa: F401


def _refused(
    capsys: pytest.CaptureFixture[str], argv: list[str], *names: str, seconds: float = 5.0
) -> str:
    started = time.perf_counter()
    code = _run(argv)
    elapsed = time.perf_counter() - started
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert code == ExitCode.BAD_INPUT, output
    assert "Traceback" not in output
    for name in names:
        assert name in output, output
    # Refused before the document is built, not after minutes of it: a loose bound, since the
    # suite runs beside other workers (speed figures live in benchmarks/).
    assert elapsed < seconds, f"{argv} took {elapsed:.2f} s"
    return output


def _app_yaml(tmp_path: Path, content: bytes) -> tuple[list[str], Path]:
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "app.yaml").write_bytes(content)
    return ["catalog", "validate", str(folder)], folder / "app.yaml"


def _template(tmp_path: Path, content: bytes) -> tuple[list[str], Path]:
    folder = tmp_path / "demo"
    shutil.copytree(DEMO, folder)
    (folder / "templates" / "evil.yaml").write_bytes(content)
    return ["catalog", "validate", str(folder)], folder / "templates" / "evil.yaml"


def _values(tmp_path: Path, content: bytes) -> tuple[list[str], Path]:
    file = tmp_path / "values.yaml"
    file.write_bytes(content)
    return ["install", "demo", "--values", str(file)], file


def _cluster_file(tmp_path: Path, content: bytes) -> tuple[list[str], Path]:
    file = tmp_path / "cluster.yaml"
    file.write_bytes(content)
    return ["cluster", "create", "-f", str(file)], file


def _kubeconfig(tmp_path: Path, content: bytes) -> tuple[list[str], Path]:
    file = tmp_path / "kubeconfig.yaml"
    file.write_bytes(content)
    return ["--kubeconfig", str(file), "list"], file


BUILDERS: dict[str, Callable[[Path, bytes], tuple[list[str], Path]]] = {
    "app.yaml": _app_yaml,
    "template": _template,
    "values file": _values,
    "cluster file": _cluster_file,
    "kubeconfig": _kubeconfig,
}


@pytest.mark.parametrize("hostile", list(HOSTILE))
@pytest.mark.parametrize("kind", KINDS)
def test_hostile_yaml_is_refused_quickly_naming_the_file(
    kind: str,
    hostile: str,
    tmp_path: Path,
    xdg: Paths,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HCLOUD_TOKEN", raising=False)  # a cluster file is refused before it
    monkeypatch.delenv("KUBECONFIG", raising=False)
    argv, file = BUILDERS[kind](tmp_path, HOSTILE[hostile])
    output = _refused(capsys, argv, str(file))
    reason = {
        "alias bomb": "anchor",
        "5000-deep flow nesting": "nest",
        "5000-deep block nesting": "nest",
        "not UTF-8": "not UTF-8",
    }[hostile]
    assert reason in output
    assert len(output) < 5000  # the message, not the expansion


def test_every_file_of_kubeconfig_is_checked_first(
    tmp_path: Path, xdg: Paths, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("apiVersion: v1\nkind: Config\n")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(ALIAS_BOMB)
    monkeypatch.setenv("KUBECONFIG", f"{good}:{bad}")
    _refused(capsys, ["list"], str(bad), "anchor")


def test_a_merge_target_kubeconfig_is_bounded_too(
    tmp_path: Path, xdg: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "config"
    target.write_bytes(ALIAS_BOMB)
    argv = ["bootstrap", "local", "--kubeconfig", str(target), "--merge", "--context", "home"]
    _refused(capsys, argv, str(target), "anchor")


def test_errors_give_line_and_column_never_the_text(tmp_path: Path) -> None:
    file = tmp_path / "values.yaml"
    file.write_text('admin_user: ada\nadmin_password: "hunter2-secret\n')
    with pytest.raises(BadInputError) as raised:
        read_values_file(file)
    text = str(raised.value)
    assert str(file) in text and "line " in text and "column " in text
    assert "hunter2" not in text


def test_an_anchor_is_refused_even_without_an_alias() -> None:
    with pytest.raises(yamlfile.YamlRefusedError, match="anchor"):
        yamlfile.load("a: &x 1\n", source="test")


def test_size_nodes_and_values_are_capped() -> None:
    with pytest.raises(yamlfile.YamlRefusedError, match="larger than 1 MiB"):
        yamlfile.load("a: " + "x" * yamlfile.MAX_FILE_BYTES, source="test")
    many = "[" + ",".join(["1"] * (yamlfile.MAX_NODES + 1)) + "]"
    with pytest.raises(yamlfile.YamlRefusedError, match="more than"):
        yamlfile.load(many, source="test", limit=4 * yamlfile.MAX_FILE_BYTES)
    with pytest.raises(yamlfile.YamlRefusedError, match="cannot be read"):
        yamlfile.load("when: 2024-13-45\n", source="test")
    with pytest.raises(yamlfile.YamlRefusedError, match="cannot be read"):
        yamlfile.load("n: " + "9" * 5000 + "\n", source="test")
    with pytest.raises(yamlfile.YamlRefusedError, match="#x0007"):
        yamlfile.load("a: \x07\n", source="test")


def test_nesting_up_to_the_limit_is_read() -> None:
    depth = yamlfile.MAX_DEPTH
    assert yamlfile.load("[" * depth + "]" * depth, source="test") is not None
    with pytest.raises(yamlfile.YamlRefusedError, match="nested deeper"):
        yamlfile.load("[" * (depth + 1) + "]" * (depth + 1), source="test")


def test_the_pure_python_loader_has_the_same_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlfile, "_Loader", yamlfile._PythonLoader)
    started = time.perf_counter()
    for text, reason in [
        (ALIAS_BOMB.decode(), "anchor"),
        ("[" * 500_000, "nested deeper"),
        ("- " * 5000 + "x", "nested deeper"),
    ]:
        with pytest.raises(yamlfile.YamlRefusedError, match=reason):
            yamlfile.load(text, source="test")
    assert yamlfile.load("a: [1, {b: c}]\n", source="test") == {"a": [1, {"b": "c"}]}
    assert time.perf_counter() - started < 1.0


def test_plain_yaml_reads_as_before() -> None:
    text = "a: 1\nb: [x, {c: true}]\nd: 2024-01-02\n---\n---\ne: null\n"
    assert yamlfile.load_all(text, source="test") == [
        {"a": 1, "b": ["x", {"c": True}], "d": __import__("datetime").date(2024, 1, 2)},
        None,
        {"e": None},
    ]


# Finding 14: patterns match the whole value, so a trailing newline is refused.


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["install", "demo", "--name", "demo\n"], "--name"),
        (["install", "demo", "--domain", "cloud.example.org\n"], "--domain"),
        (["bootstrap", "local", "--k3s-version", "v1.34.4+k3s1\n"], "--k3s-version"),
        (["bootstrap", "local", "--k3s-channel", "v1.34\n"], "--k3s-channel"),
        (["bootstrap", "local", "--context", "home\n"], "--context"),
        (["bootstrap", "local", "--context", "../../x"], "--context"),
        (["bootstrap", "local", "--context", "a/b"], "--context"),
        (["bootstrap", "ssh", "root@203.0.113.10", "--context", "../../x"], "--context"),
        (["bootstrap", "local", "--address", "cloud.example.org\n"], "--address"),
        (["bootstrap", "local", "--address", "203.0.113.10\n"], "--address"),
        (["bootstrap", "local", "--address", "fe80::1%eth0\n"], "--address"),
        (["bootstrap", "local", "--address", "a b"], "--address"),
        (["bootstrap", "ssh", "root@203.0.113.10", "--address", "x\n"], "--address"),
        (["bootstrap", "local", "--node-name", "node\n"], "--node-name"),
        (["infra", "install", "--email", "admin@example.org\n"], "--email"),
        (["infra", "install", "--hcloud-location", "fsn1\n"], "--hcloud-location"),
        (["lab", "up", "--name", "dev\n"], "--name"),
    ],
)
def test_a_trailing_newline_is_refused_naming_the_option(
    argv: list[str],
    option: str,
    xdg: Paths,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # nothing may reach ssh or a cluster
    monkeypatch.delenv("KUBECONFIG", raising=False)
    _refused(capsys, argv, option)


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", "coop\\n"), ("k3s_version", "v1.34.4+k3s1\\n"), ("email", "a@example.org\\n")],
)
def test_cluster_file_fields_with_a_trailing_newline_are_refused(
    field: str,
    value: str,
    tmp_path: Path,
    xdg: Paths,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HCLOUD_TOKEN", raising=False)
    key = tmp_path / "id.pub"
    key.write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDbC6wL9t1jXx2wUqTqQv0ZzY3Q7q2m0sQ2lJ9Y9y0cF x\n"
    )
    fields = {"name": "coop", "k3s_version": "v1.34.4+k3s1", "email": "a@example.org"}
    fields[field] = value
    file = tmp_path / "cluster.yaml"
    file.write_text(
        "".join(f'{k}: "{v}"\n' for k, v in fields.items())
        + f"locations: [fsn1]\nssh_key: {key}\nservers: {{type: cx22, count: 3}}\n"
        + "allowed_networks: {ssh: [203.0.113.7/32], api: [203.0.113.7/32]}\n"
    )
    output = _refused(capsys, ["cluster", "create", "-f", str(file)], str(file), field)
    assert output.count("\n- ") == 1, output  # only that field is wrong


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        (Parameter("code", "string", "Code", pattern="[a-z]+"), "abc\n"),
        (Parameter("domain", "domain", "Domain"), "cloud.example.org\n"),
        (Parameter("mail", "email", "Email"), "admin@example.org\n"),
    ],
)
def test_parameter_values_with_a_trailing_newline_are_refused(
    parameter: Parameter, value: str
) -> None:
    with pytest.raises(BadInputError) as raised:
        coerce(parameter, value, f"--set {parameter.name}")
    assert raised.value.exit_code == ExitCode.BAD_INPUT
    assert f"--set {parameter.name}" in raised.value.message
    assert coerce(parameter, value.rstrip("\n"), "--set") == value.rstrip("\n")


def test_app_yaml_patterns_match_whole_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "demo"
    shutil.copytree(DEMO, folder)
    app = folder / "app.yaml"
    app.write_text(app.read_text().replace("version: 1.0.0", 'version: "1.0.0\\n"', 1))
    _refused(capsys, ["catalog", "validate", str(folder)], f"{app}:10: versions[0].version")


def test_cluster_create_email_option_with_a_trailing_newline_is_refused(
    tmp_path: Path,
    xdg: Paths,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HCLOUD_TOKEN", raising=False)
    key = tmp_path / "id.pub"
    key.write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDbC6wL9t1jXx2wUqTqQv0ZzY3Q7q2m0sQ2lJ9Y9y0cF x\n"
    )
    file = tmp_path / "cluster.yaml"
    file.write_text(
        f"name: coop\nlocations: [fsn1]\nssh_key: {key}\nservers: {{type: cx22, count: 3}}\n"
        "allowed_networks: {ssh: [203.0.113.7/32], api: [203.0.113.7/32]}\n"
    )
    argv = ["cluster", "create", "-f", str(file), "--email", "a@example.org\n"]
    _refused(capsys, argv, "--email")
