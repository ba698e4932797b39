"""An instance's parameter values: given (values file, --set, --domain), remembered from the
previous run, asked for, or defaulted; each checked against its declared type."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from libresh_cli import yamlfile
from libresh_cli.apps.model import ALLOWED_GROUPS, SSO_SWITCH, App, Parameter
from libresh_cli.errors import BadInputError

DOMAIN = re.compile(r"(?=.{1,253}\Z)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
INSTANCE_NAME = re.compile(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?")
RESERVED_NAMES = {"default", "kube-system", "kube-public", "kube-node-lease", "libresh-system"}

Asker = Callable[[Parameter], Any]


@dataclass
class GivenValues:
    """Values from the command line and files, with where each came from (for messages)."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, value: Any, source: str) -> None:
        self.values[name] = value
        self.sources[name] = source


def validate_instance_name(name: str, option: str = "--name") -> str:
    if not INSTANCE_NAME.fullmatch(name):
        raise BadInputError(
            f"{option} {name!r} is not a valid instance name.",
            hint="Use 1-40 lowercase letters, digits and '-', starting with a letter and "
            "ending with a letter or digit (it becomes the Kubernetes namespace).",
        )
    if name in RESERVED_NAMES:
        raise BadInputError(f"{option} {name!r} is reserved.", hint="Choose another name.")
    return name


def validate_domain(domain: str, option: str = "--domain") -> str:
    if not DOMAIN.fullmatch(domain.lower()):
        raise BadInputError(
            f"{option} {domain!r} is not a domain name.",
            hint="Give the name the app is served at, e.g. cloud.example.org.",
        )
    return domain


def read_values_file(path: Path) -> GivenValues:
    # Bounded, and errors give line and column only: the file may hold passwords.
    data = yamlfile.load_file(path, what="values file")
    if data is None:
        return GivenValues()
    if not isinstance(data, dict):
        raise BadInputError(
            f"{path} must be a mapping of parameter names to values.",
            hint="For example:\n  domain: cloud.example.org\n  admin_user: ada",
        )
    given = GivenValues()
    for key, value in data.items():
        given.add(str(key), value, f"{path}, field {key}")
    return given


def parse_set_options(options: list[str], given: GivenValues) -> GivenValues:
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise BadInputError(
                f"--set {option!r} is not KEY=VALUE.", hint="For example: --set admin_user=ada"
            )
        given.add(key.strip(), value, f"--set {key.strip()}")
    return given


def resolve(
    app: App,
    given: GivenValues,
    previous: Mapping[str, Any] | None = None,
    ask: Asker | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Return (plain values, secret values given by the user). Missing values are asked for
    when `ask` is given (a person at a terminal), otherwise they are an error naming the flag."""
    _refuse_unknown(app, given)
    plain: dict[str, Any] = {}
    secret: dict[str, str] = {}
    for parameter in app.parameters:
        if parameter.generate and parameter.name not in given.values:
            continue  # generated and kept in the instance's Secret
        value = _value_for(parameter, given, previous, ask)
        if value is None:
            continue
        if parameter.secret:
            secret[parameter.name] = str(value)
        else:
            plain[parameter.name] = value
    return plain, secret


def check_given(app: App, given: GivenValues) -> None:
    """The values given on the command line and in files, checked against the app before
    anything else is done (no cluster needed): unknown names, secrets on the command line,
    values of the wrong type."""
    _refuse_unknown(app, given)
    for parameter in app.parameters:
        if parameter.name in given.values:
            _given_value(parameter, given)


def _refuse_unknown(app: App, given: GivenValues) -> None:
    unknown = sorted(set(given.values) - {p.name for p in app.parameters})
    for name in unknown:
        if name in (SSO_SWITCH, ALLOWED_GROUPS) and app.oidc is None:
            # Single sign-on asked of an app that cannot: say why, not just "no parameter".
            why = f" {app.sso_note}" if app.sso_note else ""
            raise BadInputError(
                f"{given.sources[name]}: {app.name} does not sign in with the identity "
                f"provider.{why}",
                hint=f"`libresh catalog show {app.name}` says what it supports; "
                "`libresh catalog list` shows which apps have single sign-on.",
            )
    if unknown:
        known = ", ".join(p.name for p in app.parameters)
        raise BadInputError(
            f"{given.sources[unknown[0]]}: {app.name} has no parameter {unknown[0]!r}.",
            hint=f"Its parameters: {known}.",
        )


def _given_value(parameter: Parameter, given: GivenValues) -> Any:
    source = given.sources[parameter.name]
    if parameter.secret and source.startswith("--set"):
        raise BadInputError(
            f"{source}: {parameter.name} is a secret and is never taken from the command "
            "line (it would stay in shell history and process lists).",
            hint="Put it in a values file (-f values.yaml, mode 0600) or answer the prompt.",
        )
    return coerce(parameter, given.values[parameter.name], source)


def _value_for(
    parameter: Parameter,
    given: GivenValues,
    previous: Mapping[str, Any] | None,
    ask: Asker | None,
) -> Any:
    if parameter.name in given.values:
        value = _given_value(parameter, given)
        _refuse_changing_immutable(parameter, value, previous, given.sources[parameter.name])
        return value
    if previous is not None and parameter.name in previous:
        return previous[parameter.name]
    if ask is not None and (parameter.required or parameter.default is None):
        return coerce(parameter, ask(parameter), "your answer")
    if parameter.default is not None:
        return coerce(parameter, parameter.default, "the default")
    if parameter.required:
        raise BadInputError(
            f"No value for {parameter.name} ({parameter.prompt}).",
            hint=f"Give it with {parameter.flag} or in a values file (-f); "
            "run in a terminal to be asked.",
        )
    return None


def _refuse_changing_immutable(
    parameter: Parameter, value: Any, previous: Mapping[str, Any] | None, source: str
) -> None:
    """An immutable parameter keeps the value the instance was installed with (`previous`,
    None for a new instance): a server name that is in every ID the app has stored."""
    if not parameter.immutable or previous is None or previous.get(parameter.name) == value:
        return
    kept = previous.get(parameter.name)
    shown = "no value" if kept is None else repr(kept)
    raise BadInputError(
        f"{source}: {parameter.name} cannot change once the instance is installed "
        f"(it was installed with {shown}).",
        hint=f"Leave out {parameter.flag} to keep it. Another value needs a new instance "
        "(libresh install … --name NEW), and its data starts empty.",
    )


def coerce(parameter: Parameter, value: Any, source: str) -> Any:
    """Check and convert one value; the error names where the value came from."""
    problem = problem_with(parameter, value)
    if problem:
        shown = "the value" if parameter.secret else repr(value)
        raise BadInputError(f"{source}: {shown} is not valid for {parameter.name}: {problem}.")
    if parameter.type == "integer":
        return int(value)
    if parameter.type == "boolean":
        return value if isinstance(value, bool) else str(value).lower() in ("true", "yes", "1")
    return str(value).lower() if parameter.type == "domain" else str(value)


MAX_MATCHED_LENGTH = 1000  # characters of a value checked against a pattern


def problem_with(parameter: Parameter, value: Any) -> str | None:
    if isinstance(value, list | dict | set | tuple):
        # A values file's list or mapping would become its Python text ("['a']").
        expected = {"integer": "a whole number", "boolean": "true or false"}
        return f"expected {expected.get(parameter.type, 'text')}"
    text = str(value)
    matched = parameter.pattern or parameter.type in ("domain", "email")
    if matched and len(text) > MAX_MATCHED_LENGTH:
        # Checked before any regular expression runs on it: matching time grows with length.
        return f"it is longer than {MAX_MATCHED_LENGTH} characters"
    if parameter.type == "domain" and not DOMAIN.fullmatch(text.lower()):
        return "expected a domain name such as cloud.example.org"
    if parameter.type == "email" and not EMAIL.fullmatch(text):
        return "expected an email address"
    if parameter.type == "integer":
        if isinstance(value, bool) or not re.fullmatch(r"-?\d+", text):
            return "expected a whole number"
        if parameter.minimum is not None and int(text) < parameter.minimum:
            return f"the smallest allowed is {parameter.minimum}"
        if parameter.maximum is not None and int(text) > parameter.maximum:
            return f"the largest allowed is {parameter.maximum}"
    if (
        parameter.type == "boolean"
        and not isinstance(value, bool)
        and text.lower() not in ("true", "false", "yes", "no", "1", "0")
    ):
        return "expected true or false"
    if parameter.pattern and not re.fullmatch(parameter.pattern, text):
        # An example first: people read "10Gi" faster than a regular expression.
        example = parameter.default
        if example is not None and re.fullmatch(parameter.pattern, str(example)):
            return f"it must look like {example} (it must match {parameter.pattern})"
        return f"it must match {parameter.pattern}"
    return None
