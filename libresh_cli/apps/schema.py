"""Reading app.yaml: every error at once, each with file, field, line and what is expected.

The vocabulary is fixed (model.py); anything else in the file is an error, so a typo in a
field name is caught by `libresh catalog validate` rather than silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from libresh_cli import yamlfile
from libresh_cli.apps.model import (
    ALLOWED_GROUPS,
    ARCHITECTURES,
    HOOK_PHASES,
    MAIL,
    OIDC,
    OIDC_OPTIONS,
    PARAMETER_TYPES,
    SCHEMA_VERSION,
    SERVICE_KINDS,
    SSO_SWITCH,
    App,
    Health,
    HookStep,
    OidcRequirement,
    Parameter,
    Use,
    Version,
    Web,
)
from libresh_cli.apps.params import problem_with
from libresh_cli.errors import BadInputError

NAME = re.compile(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?")
PARAMETER_NAME = re.compile(r"[a-z][a-z0-9_]{0,40}")
VERSION = re.compile(r"\d+\.\d+\.\d+")
# A Kubernetes quantity (resource.Quantity): a number with a suffix (m, Mi, G, e3…).
QUANTITY = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+|[KMGTPE]i|[mkMGTPE])?")
# A category: one lowercase word, hyphens allowed (`office`, `social-media`).
CATEGORY = re.compile(r"[a-z]([-a-z]{0,28}[a-z])?")
IMAGE = re.compile(r"[a-z0-9.\-/:_]+(@sha256:[a-f0-9]{64})?")
Path_ = tuple[str | int, ...]

# The reference of the package format, and its section (a heading's anchor) explaining each
# top-level field of app.yaml: every problem names it (tests/unit/test_apps_readme.py checks
# that each anchor exists).
REFERENCE = "apps/README.md"
SECTIONS = {
    "schema_version": "about-the-app",
    "name": "about-the-app",
    "description": "about-the-app",
    "category": "about-the-app",
    "homepage": "about-the-app",
    "license": "about-the-app",
    "architectures": "about-the-app",
    "resources": "about-the-app",
    "versions": "versions",
    "upgrade": "upgrades",
    "parameters": "parameters",
    "requires": "backing-services",
    "sso_note": "single-sign-on",
    "uses": "apps-that-use-other-apps",
    "health": "health",
    "hooks": "hooks",
    "backup": "backups",
    "web": "web",
    "(templates)": "the-package",
    "(file)": "the-package",
}


@dataclass(frozen=True)
class Problem:
    file: Path
    field: str
    line: int | None
    message: str
    section: str = ""  # of REFERENCE; by default the one of the field

    @property
    def see(self) -> str:
        top = re.split(r"[.\[]", self.field, maxsplit=1)[0]
        return f"{REFERENCE}#{self.section or SECTIONS.get(top, 'the-app-definition')}"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{where}: {self.field}: {self.message} (see {self.see})"


class CatalogInvalidError(BadInputError):
    def __init__(self, problems: list[Problem]) -> None:
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(
            f"{problems[0].file.parent.name}: {count} in the app definition:\n"
            + "\n".join(f"  {p}" for p in problems),
            hint="Fix them and check again with `libresh catalog validate PATH`. "
            f"{REFERENCE} is the reference of the package format.",
        )
        self.problems = problems


def field_name(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


def line_numbers(text: str) -> dict[Path_, int]:
    """Map each field's path to its line (1-based), from PyYAML's node tree."""
    lines: dict[Path_, int] = {}

    def walk(node: yaml.Node, path: Path_) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                walk(value, (*path, str(key.value)))
                lines[(*path, str(key.value))] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index))

    try:
        root = yamlfile.compose(text, source="app.yaml")
    except yamlfile.YamlRefusedError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


class Checker:
    """Collects problems while reading fields; never stops at the first."""

    def __init__(self, file: Path, lines: dict[Path_, int]) -> None:
        self.file = file
        self.lines = lines
        self.problems: list[Problem] = []

    def problem(self, path: Path_, message: str) -> None:
        line = self.lines.get(path) or self.lines.get(path[:-1])
        self.problems.append(Problem(self.file, field_name(path), line, message))

    def mapping(
        self, data: Any, path: Path_, allowed: set[str], required: set[str]
    ) -> Mapping[str, Any]:
        if not isinstance(data, Mapping):
            self.problem(path, f"expected a mapping, got {type(data).__name__}")
            return {}
        for key in sorted(set(data) - allowed, key=str):
            self.problem((*path, str(key)), f"unknown field; expected one of {sorted(allowed)}")
        for key in sorted(required - set(data)):
            self.problem((*path, key), "missing (required)")
        return data

    def text(
        self,
        data: Mapping[str, Any],
        path: Path_,
        key: str,
        pattern: re.Pattern[str] | None = None,
        expected: str = "",
        default: str = "",
    ) -> str:
        value = data.get(key, default)
        if not isinstance(value, str):
            self.problem((*path, key), f"expected text, got {value!r}")
            return default
        if pattern is not None and not pattern.fullmatch(value):
            self.problem((*path, key), f"{value!r} is not {expected}")
        return value

    def integer(
        self,
        data: Mapping[str, Any],
        path: Path_,
        key: str,
        default: int,
        low: int = 0,
        high: int = 10**9,
    ) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.problem(
                (*path, key), f"expected a whole number from {low} to {high}, got {value!r}"
            )
            return default
        return value

    def sequence(self, data: Mapping[str, Any], path: Path_, key: str) -> list[Any]:
        value = data.get(key, [])
        if not isinstance(value, list):
            self.problem((*path, key), f"expected a list, got {type(value).__name__}")
            return []
        return value


def load_app(directory: Path) -> App:
    """Read and validate `directory/app.yaml`; raise CatalogInvalidError listing every problem."""
    file = directory / "app.yaml"
    if file.is_symlink() and not file.resolve().is_relative_to(directory.resolve()):
        # Every file of a package is inside its folder (issue 14, finding 7).
        problem = Problem(file, "(file)", None, "a link to outside the app's folder")
        raise CatalogInvalidError([problem])
    try:
        text = yamlfile.read_text(file, what="app definition")
        data = yamlfile.load(text, source=str(file))
    except yamlfile.YamlRefusedError as error:
        # Bounded (aliases, size, depth, UTF-8); the reason never quotes the file's text.
        where = f" (column {error.column})" if error.column else ""
        problem = Problem(file, "(file)", error.line, f"{error.reason}{where}")
        raise CatalogInvalidError([problem]) from None
    checker = Checker(file, line_numbers(text))
    app = _read_app(checker, data, directory)
    if checker.problems or app is None:
        raise CatalogInvalidError(checker.problems)
    return app


TOP_FIELDS = {
    "schema_version",
    "name",
    "description",
    "category",
    "homepage",
    "license",
    "architectures",
    "resources",
    "versions",
    "upgrade",
    "parameters",
    "requires",
    "sso_note",
    "uses",
    "health",
    "hooks",
    "backup",
    "web",
}


def _read_app(c: Checker, data: Any, directory: Path) -> App | None:
    if not isinstance(data, Mapping):
        c.problem((), f"expected a mapping of fields, got {type(data).__name__}")
        return None
    top = c.mapping(data, (), TOP_FIELDS, {"schema_version", "name", "description", "versions"})
    if top.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        c.problem(
            ("schema_version",),
            f"this libresh reads schema_version {SCHEMA_VERSION}, "
            f"got {top.get('schema_version')!r}",
        )
    name = c.text(top, (), "name", NAME, "a name of lowercase letters, digits and '-'")
    if name and name != directory.name:
        c.problem(("name",), f"must match the folder name {directory.name!r}")
    architectures = tuple(c.sequence(top, (), "architectures")) or ("amd64", "arm64")
    for index, arch in enumerate(architectures):
        if arch not in ARCHITECTURES:
            c.problem(("architectures", index), f"{arch!r} is not one of {list(ARCHITECTURES)}")
    versions = _read_versions(c, top)
    parameters = _read_parameters(c, top)
    requires = _read_requires(c, top)
    oidc = _read_oidc(c, top)
    upgrade = c.mapping(top.get("upgrade", {}), ("upgrade",), {"one_major_at_a_time"}, set())
    one_major = upgrade.get("one_major_at_a_time", True)
    if not isinstance(one_major, bool):
        c.problem(("upgrade", "one_major_at_a_time"), f"expected true or false, got {one_major!r}")
    if not (directory / "templates").is_dir() or not any((directory / "templates").glob("*.yaml")):
        c.problem(("(templates)",), f"no templates: expected {directory / 'templates'}/*.yaml")
    return App(
        name=name,
        description=c.text(top, (), "description"),
        category=c.text(
            top, (), "category", CATEGORY, "one lowercase word (office, files, notes)", "other"
        ),
        homepage=c.text(top, (), "homepage"),
        license=c.text(top, (), "license"),
        architectures=architectures,
        versions=versions,
        parameters=with_allowed_groups(parameters, oidc),
        requires=requires,
        oidc=oidc,
        sso_note=c.text(top, (), "sso_note"),
        requires_mail=MAIL in (top.get("requires") or {}),
        postgres_locale=_read_postgres_locale(c, top),
        directory=directory,
        one_major_at_a_time=bool(one_major),
        resources=_read_resources(c, top),
        health=_read_health(c, top),
        hooks=_read_hooks(c, top),
        web=_read_web(c, top),
        uses=_read_uses(c, top),
        backup_volumes=tuple(_read_backup(c, top, "volumes")),
        backup_databases=_read_databases(c, top, requires),
    )


def _read_versions(c: Checker, top: Mapping[str, Any]) -> tuple[Version, ...]:
    versions: list[Version] = []
    for index, entry in enumerate(c.sequence(top, (), "versions")):
        path = ("versions", index)
        item = c.mapping(
            entry, path, {"version", "image", "maintained_until"}, {"version", "image"}
        )
        version = c.text(item, path, "version", VERSION, "MAJOR.MINOR.PATCH (e.g. 30.0.4)")
        image = c.text(item, path, "image", IMAGE, "an image reference with a pinned tag")
        if image and ":" not in image.rsplit("/", 1)[-1] and "@" not in image:
            c.problem((*path, "image"), f"{image!r} has no tag: pin one (never 'latest')")
        elif image.endswith(":latest"):
            c.problem((*path, "image"), "'latest' is not pinned: give the exact tag")
        if (
            VERSION.fullmatch(version)
            and versions
            and VERSION.fullmatch(versions[-1].version)
            and (_key(version) <= _key(versions[-1].version))
        ):
            c.problem(
                (*path, "version"),
                f"{version} must be newer than {versions[-1].version} (versions go oldest first)",
            )
        versions.append(Version(version, image, _maintained_until(c, item, path)))
    if not versions and "versions" in top:
        c.problem(("versions",), "at least one version is needed")
    return tuple(versions)


def _maintained_until(c: Checker, item: Mapping[str, Any], path: Path_) -> date | None:
    """`maintained_until: 2026-09-28` (YAML reads it as a date; quoted text works too)."""
    value = item.get("maintained_until")
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    c.problem((*path, "maintained_until"), f"expected a date (YYYY-MM-DD), got {value!r}")
    return None


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


PARAMETER_FIELDS = {
    "name",
    "type",
    "prompt",
    "description",
    "default",
    "required",
    "pattern",
    "min",
    "max",
    "secret",
    "length",
    "immutable",
}


def _read_parameters(c: Checker, top: Mapping[str, Any]) -> tuple[Parameter, ...]:
    parameters: list[Parameter] = []
    for index, entry in enumerate(c.sequence(top, (), "parameters")):
        path = ("parameters", index)
        item = c.mapping(entry, path, PARAMETER_FIELDS, {"name", "type"})
        name = c.text(item, path, "name", PARAMETER_NAME, "a lowercase identifier (a-z, 0-9, _)")
        kind = c.text(item, path, "type")
        if kind and kind not in PARAMETER_TYPES:
            c.problem((*path, "type"), f"{kind!r} is not one of {list(PARAMETER_TYPES)}")
        secret = item.get("secret")
        if secret not in (None, "generate"):
            c.problem((*path, "secret"), f"expected 'generate', got {secret!r}")
        pattern = item.get("pattern")
        if pattern is not None and not _check_pattern(c, (*path, "pattern"), pattern):
            pattern = None
        if name in {p.name for p in parameters}:
            c.problem((*path, "name"), f"{name!r} is declared twice")
        parameter = Parameter(
            name=name,
            type=kind,
            prompt=c.text(item, path, "prompt", default=name),
            description=c.text(item, path, "description"),
            default=item.get("default"),
            required=_flag(c, item, path, "required", "default" not in item and secret is None),
            pattern=pattern if isinstance(pattern, str) else None,
            minimum=_bound(c, item, path, "min"),
            maximum=_bound(c, item, path, "max"),
            generate=secret == "generate",  # noqa: S105 - a keyword, not a password
            length=c.integer(item, path, "length", 32, 12, 128),
            immutable=_flag(c, item, path, "immutable", False),
        )
        _check_default(c, path, item, parameter)
        parameters.append(parameter)
    return tuple(parameters)


MAX_PATTERN_LENGTH = 200
_REPEAT = re.compile(r"\{(\d*)(,?)(\d*)\}")


def _check_pattern(c: Checker, path: Path_, pattern: Any) -> bool:
    """A pattern is matched against user input: it must compile, be short, and not nest
    quantifiers (`(a+)+`, `(a*)*`, `(a+)*`), whose backtracking can take forever."""
    if not isinstance(pattern, str):
        c.problem(path, f"expected text, got {pattern!r}")
        return False
    if len(pattern) > MAX_PATTERN_LENGTH:
        c.problem(path, f"longer than {MAX_PATTERN_LENGTH} characters")
        return False
    try:
        re.compile(pattern)
    except re.error as error:
        c.problem(path, f"not a valid regular expression: {error}")
        return False
    if nested_quantifier(pattern):
        c.problem(
            path,
            "a repeated group that itself repeats (such as (a+)+) can take forever to "
            "match: write it without nested repetition",
        )
        return False
    return True


def _repeats(pattern: str, index: int) -> bool:
    """Whether a quantifier that repeats more than once starts at pattern[index]."""
    if index >= len(pattern):
        return False
    if pattern[index] in "+*":
        return True
    found = _REPEAT.match(pattern, index) if pattern[index] == "{" else None
    if found is None:
        return False
    low, comma, high = found.groups()
    return bool(comma and (not high or int(high) > 1)) or (not comma and int(low or 0) > 1)


def nested_quantifier(pattern: str) -> bool:
    """A heuristic for catastrophic backtracking: a group holding a repetition, itself
    repeated. Escapes and character classes are skipped."""
    stack = [False]  # per open group: does it hold a repetition?
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            index += 2 if pattern[index + 1 : index + 2] == "^" else 1
            index += 1 if pattern[index : index + 1] == "]" else 0
            while index < len(pattern) and pattern[index] != "]":
                index += 2 if pattern[index] == "\\" else 1
            index += 1
            if _repeats(pattern, index):
                stack[-1] = True
            continue
        if char == "(":
            stack.append(False)
        elif char == ")" and len(stack) > 1:
            inner = stack.pop()
            if _repeats(pattern, index + 1):
                if inner:
                    return True
                stack[-1] = True
            elif inner:
                stack[-1] = True
        elif _repeats(pattern, index):
            stack[-1] = True
        index += 1
    return False


def _flag(c: Checker, item: Mapping[str, Any], path: Path_, key: str, default: bool) -> bool:
    value = item.get(key, default)
    if not isinstance(value, bool):
        c.problem((*path, key), f"expected true or false, got {value!r}")
        return default
    return value


def _bound(c: Checker, item: Mapping[str, Any], path: Path_, key: str) -> int | None:
    """min and max of an integer parameter: whole numbers, min not above max."""
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 10**18:
        c.problem((*path, key), f"expected a whole number, got {value!r}")
        return None
    low = item.get("min")
    if key == "max" and isinstance(low, int) and not isinstance(low, bool) and low > value:
        c.problem((*path, key), f"{value} is below min ({low})")
        return None
    return value


def _check_default(c: Checker, path: Path_, item: Mapping[str, Any], parameter: Parameter) -> None:
    """A default is a value like any other: of the parameter's type, matching its pattern."""
    if item.get("default") is None or parameter.type not in PARAMETER_TYPES:
        return
    if "pattern" in item and parameter.pattern is None:
        return  # the pattern itself is refused
    bounds = (parameter.minimum, parameter.maximum)
    if not all(b is None or (isinstance(b, int) and not isinstance(b, bool)) for b in bounds):
        return
    problem = problem_with(parameter, parameter.default)
    if problem:
        shown = "the default" if parameter.secret else repr(parameter.default)
        c.problem((*path, "default"), f"{shown} is not valid: {problem}")


def _read_requires(c: Checker, top: Mapping[str, Any]) -> tuple[str, ...]:
    known = set(SERVICE_KINDS) | {MAIL, OIDC}
    requires = c.mapping(top.get("requires", {}), ("requires",), known, set())
    for kind, options in requires.items():
        c.mapping(options or {}, ("requires", kind), SERVICE_OPTIONS.get(kind, set()), set())
    return tuple(kind for kind in SERVICE_KINDS if kind in requires)


# What an app may ask of a service, and the values each option takes.
SERVICE_OPTIONS = {"postgres": {"locale"}, OIDC: OIDC_OPTIONS}
POSTGRES_LOCALES = ("C",)


def _read_postgres_locale(c: Checker, top: Mapping[str, Any]) -> str:
    requires = top.get("requires")
    options = requires.get("postgres") if isinstance(requires, Mapping) else None
    locale = options.get("locale", "") if isinstance(options, Mapping) else ""
    if locale and locale not in POSTGRES_LOCALES:
        c.problem(
            ("requires", "postgres", "locale"),
            f"{locale!r} is not one of {list(POSTGRES_LOCALES)}",
        )
        return ""
    return str(locale)


def _read_uses(c: Checker, top: Mapping[str, Any]) -> tuple[Use, ...]:
    """`uses: {office: {apps: [collabora], optional: true}}`: roles, each filled by an
    instance of one of the listed apps."""
    uses = c.mapping(top.get("uses", {}), ("uses",), set(top.get("uses") or {}), set())
    read: list[Use] = []
    for role, options in uses.items():
        path = ("uses", str(role))
        if not isinstance(role, str) or not PARAMETER_NAME.fullmatch(role):
            c.problem(path, f"{role!r} is not a role name (lowercase letters, digits, _)")
        item = c.mapping(options or {}, path, {"apps", "optional"}, {"apps"})
        apps = c.sequence(item, path, "apps")
        for index, name in enumerate(apps):
            if not isinstance(name, str) or not NAME.fullmatch(name):
                c.problem((*path, "apps", index), f"{name!r} is not an app name")
        if "apps" in item and not apps:
            c.problem((*path, "apps"), "at least one app is needed")
        optional = _flag(c, item, path, "optional", True)
        read.append(Use(str(role), tuple(str(a) for a in apps), optional))
    return tuple(read)


def _read_resources(c: Checker, top: Mapping[str, Any]) -> dict[str, str]:
    resources = c.mapping(top.get("resources", {}), ("resources",), {"cpu", "memory"}, set())
    for key, value in resources.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            c.problem(
                ("resources", key), f"expected a quantity such as 100m or 64Mi, got {value!r}"
            )
        elif not QUANTITY.fullmatch(str(value)):
            c.problem(("resources", key), f"{value!r} is not a quantity such as 100m or 64Mi")
    return {key: str(value) for key, value in resources.items()}


def _read_health(c: Checker, top: Mapping[str, Any]) -> Health:
    health = c.mapping(top.get("health", {}), ("health",), {"workloads", "timeout"}, set())
    workloads = c.sequence(health, ("health",), "workloads")
    for index, ref in enumerate(workloads):
        if not isinstance(ref, str) or not re.fullmatch(
            r"(Deployment|StatefulSet)/[-a-z0-9]+", ref
        ):
            c.problem(
                ("health", "workloads", index),
                f"expected Deployment/NAME or StatefulSet/NAME, got {ref!r}",
            )
    return Health(
        tuple(str(w) for w in workloads), c.integer(health, ("health",), "timeout", 600, 5, 7200)
    )


def _read_hooks(c: Checker, top: Mapping[str, Any]) -> dict[str, tuple[HookStep, ...]]:
    hooks = c.mapping(top.get("hooks", {}), ("hooks",), set(HOOK_PHASES), set())
    result: dict[str, tuple[HookStep, ...]] = {}
    for phase, _steps in hooks.items():
        read: list[HookStep] = []
        for index, entry in enumerate(c.sequence(hooks, ("hooks",), phase)):
            path = ("hooks", phase, index)
            step = c.mapping(entry, path, {"name", "job", "scheduled"}, {"name", "job"})
            scheduled = _flag(c, step, path, "scheduled", False)
            if scheduled and phase != "pre_backup":
                c.problem(
                    (*path, "scheduled"),
                    "only a pre_backup step can run before scheduled backups "
                    "(nothing else runs around them)",
                )
                scheduled = False
            job = c.mapping(
                step.get("job", {}),
                (*path, "job"),
                {"command", "timeout", "volumes", "run_as_user"},
                {"command"},
            )
            command = job.get("command")
            if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
                c.problem((*path, "job", "command"), "expected a list of strings")
                command = []
            read.append(
                HookStep(
                    name=c.text(
                        step, path, "name", NAME, "a name of lowercase letters, digits, '-'"
                    ),
                    command=tuple(command),
                    timeout=c.integer(job, (*path, "job"), "timeout", 600, 5, 7200),
                    mount_volumes=_flag(c, job, (*path, "job"), "volumes", True),
                    run_as_user=c.integer(job, (*path, "job"), "run_as_user", 0, 0, 2**31 - 1)
                    if "run_as_user" in job
                    else None,
                    scheduled=scheduled,
                )
            )
        result[phase] = tuple(read)
    return result


def _read_web(c: Checker, top: Mapping[str, Any]) -> Web | None:
    if "web" not in top:
        return None
    web = c.mapping(top["web"], ("web",), {"service", "port"}, {"service", "port"})
    return Web(
        c.text(web, ("web",), "service", NAME, "a Service name"),
        c.integer(web, ("web",), "port", 80, 1, 65535),
    )


def _read_backup(c: Checker, top: Mapping[str, Any], key: str) -> list[str]:
    backup = c.mapping(top.get("backup", {}), ("backup",), {"volumes", "databases"}, set())
    return [str(v) for v in c.sequence(backup, ("backup",), key)]


def _read_databases(
    c: Checker, top: Mapping[str, Any], requires: tuple[str, ...]
) -> tuple[str, ...]:
    """Only PostgreSQL is dumped (the runner runs pg_dump), and only a required one."""
    databases = _read_backup(c, top, "databases")
    for index, database in enumerate(databases):
        path = ("backup", "databases", index)
        if database != "postgres":
            c.problem(path, f"{database!r}: only postgres is backed up (redis is a cache)")
        elif database not in requires:
            c.problem(path, "postgres is not in requires")
    return tuple(databases)


# -- single sign-on ----------------------------------------------------------------------

REDIRECT_PATH = re.compile(r"/[A-Za-z0-9._~/*-]{0,200}")
SCOPE = re.compile(r"[a-z][a-z0-9_:.-]{0,63}")
CLAIM = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
DEFAULT_ALLOWED_GROUPS = "admins,members"
GROUP_LIST = r"[a-z0-9][a-z0-9_-]{0,62}(,[a-z0-9][a-z0-9_-]{0,62}){0,31}"


def _read_oidc(c: Checker, top: Mapping[str, Any]) -> OidcRequirement | None:
    requires = top.get("requires")
    if not isinstance(requires, Mapping) or not isinstance(requires.get(OIDC), Mapping):
        return None
    options = requires[OIDC]
    path = ("requires", OIDC)
    paths = tuple(str(p) for p in c.sequence(options, path, "redirect_paths"))
    if not paths:
        c.problem((*path, "redirect_paths"), "list at least one path, e.g. [/oidc/callback]")
    for index, item in enumerate(paths):
        if not REDIRECT_PATH.fullmatch(item):
            c.problem((*path, "redirect_paths", index), f"{item!r} is not a path starting with /")
    scopes = tuple(str(s) for s in c.sequence(options, path, "scopes")) or ("openid",)
    for index, scope in enumerate(scopes):
        if not SCOPE.fullmatch(scope):
            c.problem((*path, "scopes", index), f"{scope!r} is not a scope name")
    if "openid" not in scopes:
        c.problem((*path, "scopes"), "must include openid (an OIDC sign-in asks for it)")
    claim = c.text(options, path, "groups_claim", CLAIM, "a claim name", "groups")
    optional = options.get("optional", False)
    if not isinstance(optional, bool):
        c.problem((*path, "optional"), f"expected true or false, got {optional!r}")
    return OidcRequirement(paths, scopes, claim, optional is True)


def with_allowed_groups(
    parameters: tuple[Parameter, ...], oidc: OidcRequirement | None
) -> tuple[Parameter, ...]:
    """An app that requires oidc gets the parameter `allowed_groups` (unless it declares its
    own): the groups whose members may sign in to an instance, `admins,members` by default."""
    if oidc is None:
        return parameters
    added = []
    if oidc.optional and not any(p.name == SSO_SWITCH for p in parameters):
        added.append(
            Parameter(
                name=SSO_SWITCH,
                type="boolean",
                prompt="Sign in with the cluster's identity provider?",
                default=False,
                required=False,
            )
        )
    if any(p.name == ALLOWED_GROUPS for p in parameters):
        return (*parameters, *added)
    allowed = Parameter(
        name=ALLOWED_GROUPS,
        type="string",
        prompt="Groups whose members may sign in (comma-separated)",
        description="Checked by the identity provider at every sign-in.",
        default=DEFAULT_ALLOWED_GROUPS,
        required=False,
        pattern=GROUP_LIST,
    )
    return (*parameters, *added, allowed)
