"""From an app, a version and an instance's values to the Kubernetes objects to apply.

Pure: no cluster access. Templates run in Jinja2's sandbox with StrictUndefined (a catalog may
come from a third party, and a missing value must fail rather than render as ""). Every
object gets libresh's labels and the instance's namespace; apps may only create namespaced
kinds from an allow-list, so installing an app never needs cluster-wide rights.
"""

from __future__ import annotations

import copy
import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import BaseLoader, StrictUndefined, TemplateError, TemplateNotFound, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from libresh_cli import yamlfile
from libresh_cli.apps.instance import Instance
from libresh_cli.apps.model import App
from libresh_cli.errors import BadInputError
from libresh_cli.kube.store import secret_manifest

CREDENTIALS_SECRET = "libresh-credentials"  # noqa: S105 - the Secret's name
# The cluster's SMTP relay for an app that requires mail: host, port, tls, user, password,
# from (apps/README.md, "Email"; the values of libresh_cli/mail/relay.py CONNECTION_KEYS).
MAIL_SECRET = "libresh-mail"  # noqa: S105 - the Secret's name
# The instance's OIDC client for an app that requires oidc: issuer, discovery_url, client_id,
# client_secret, scopes, groups_claim (apps/README.md, "Single sign-on").
OIDC_SECRET = "libresh-oidc"  # noqa: S105 - the Secret's name
CLUSTER_ISSUER = "letsencrypt-production"
ALLOWED_KINDS = {
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "PersistentVolumeClaim"),
    ("v1", "ServiceAccount"),
    ("networking.k8s.io/v1", "Ingress"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("policy/v1", "PodDisruptionBudget"),
}
Manifest = dict[str, Any]


class RenderError(BadInputError):
    """A package's template breaks a rule; `section` is the anchor of the section of
    apps/README.md that explains the rule (catalog validate names it)."""

    def __init__(self, message: str, *, hint: str | None = None, section: str = "templates"):
        super().__init__(message, hint=hint)
        self.section = section


def render(instance: Instance) -> list[Manifest]:
    """Every object of the instance: namespace and guards first, then the app's templates."""
    objects = [namespace_manifest(instance), network_policy_manifest(instance)]
    objects.append(credentials_secret(instance))
    for kind in instance.app.requires:
        objects.append(connection_secret(kind, instance))
        objects += service_objects(kind, instance)
    if instance.app.oidc is not None and instance.oidc:
        objects.append(_secret(OIDC_SECRET, instance.oidc))
    if instance.app.requires_mail and instance.mail:
        objects.append(_secret(MAIL_SECRET, instance.mail))
    # What an app's own templates may not do (issue 14, finding 7): libresh's objects above
    # are the only ones named libresh-*, and every object is declared once.
    declared = {_identity(o): "libresh" for o in objects}
    package = instance.app.directory.resolve()
    for template in instance.app.templates:
        _check_inside(template, package)
        for document in _render_file(template, instance):
            _check_app_object(document, template)
            identity = _identity(document)
            if identity in declared:
                raise RenderError(
                    f"{template}: {_label(document)} is declared twice (also by "
                    f"{declared[identity]}).",
                    hint="Declare each object once; names used by libresh's services "
                    "(postgres, redis…) are taken.",
                    section="what-templates-may-not-do",
                )
            declared[identity] = str(template)
            objects.append(document)
    return [_finish(o, instance) for o in objects]


SERVICES_DIR = Path(str(resources.files(__package__).joinpath("services")))
PROVISION_SCRIPT = SERVICES_DIR / "postgres-provision.sh"
EMBEDDED_INIT_SCRIPT = SERVICES_DIR / "postgres-embedded-init.sh"


def service_objects(kind: str, instance: Instance) -> list[Manifest]:
    """What meets a requirement inside the namespace: a whole server (embedded), a
    provisioning Job with its admin credentials (external postgres), or nothing (external
    redis, shared as it is)."""
    provider = instance.provider(kind)
    if provider == "embedded" and kind == "postgres":
        init = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "libresh-postgres-init"},
            "data": {"10-libresh-app-role.sh": EMBEDDED_INIT_SCRIPT.read_text()},
        }
        return [init, *_render_file(SERVICES_DIR / "postgres-embedded.yaml", instance)]
    if provider == "embedded":
        return _render_file(SERVICES_DIR / f"{kind}-embedded.yaml", instance)
    if kind == "postgres":
        script = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "libresh-postgres-provision"},
            "data": {"provision.sh": PROVISION_SCRIPT.read_text()},
        }
        return [script, *_render_file(SERVICES_DIR / "postgres-external.yaml", instance)]
    return []


ADMIN_SECRET = "libresh-postgres-admin"  # noqa: S105 - a name
PROVISION_JOB = "postgres-provision"
FOR_JOB = "libresh.dev/for-job"  # annotation: the Job a transient Secret is made for


def provisioning_secrets(instance: Instance) -> list[Manifest]:
    """The Secrets a provisioning Job reads while it runs, and nothing else ever: the shared
    PostgreSQL admin's password (external postgres), which opens every instance's database.
    Not among the instance's objects (an app namespace never keeps it): apply_and_wait
    (libresh_cli/apps/lifecycle.py) makes it only when that Job is made or made anew, and
    deletes it once the Job has finished. Annotated with the Job's name (FOR_JOB)."""
    if "postgres" not in instance.app.requires or instance.provider("postgres") == "embedded":
        return []
    admin = _secret(ADMIN_SECRET, {"password": instance.service_secrets["postgres_admin_password"]})
    admin["metadata"]["annotations"] = {FOR_JOB: PROVISION_JOB}
    return [_finish(admin, instance)]


def _service_context(instance: Instance, kind: str) -> dict[str, Any]:
    """The provider's settings for a service, with what the app asks of it (`locale`), which
    the embedded server's and the provisioning Job's templates read."""
    context = dict(instance.services.get(kind, {}))
    if kind == "postgres" and instance.app.postgres_locale:
        context["locale"] = instance.app.postgres_locale
    return context


def template_context(instance: Instance) -> dict[str, Any]:
    return {
        "instance": {
            "name": instance.name,
            "namespace": instance.namespace,
            "domain": instance.domain,
            "url": instance.url,
        },
        "app": {"name": instance.app.name, "version": instance.version.version},
        "image": instance.version.image,
        "params": dict(instance.params),
        "secrets": {"name": CREDENTIALS_SECRET},
        "services": {kind: _service_context(instance, kind) for kind in instance.app.requires},
        "mail": mail_context(instance),
        "oidc": oidc_context(instance),
        "labels": instance.labels(),
        "cluster_issuer": CLUSTER_ISSUER,
        # Other instances (apps/README.md, "Apps that use other apps").
        # Every declared role, None when no instance fills it.
        "uses": {
            use.role: instance.links.get("uses", {}).get(use.role) for use in instance.app.uses
        },
        "used_by": list(instance.links.get("used_by", [])),
    }


def oidc_context(instance: Instance) -> dict[str, Any]:
    """The OIDC client as templates see it, the client secret aside (it stays in the
    Secret). When validating, a sample client on the provider https://id.example.org."""
    if instance.app.oidc is None or not instance.app.oidc.wanted(instance.params):
        return {"enabled": False}
    values = instance.oidc or {
        "issuer": "https://id.example.org/realms/libresh",
        "discovery_url": "https://id.example.org/realms/libresh/.well-known/openid-configuration",
        "client_id": instance.name,
        "scopes": " ".join(instance.app.oidc.scopes),
        "groups_claim": instance.app.oidc.groups_claim,
    }
    shown = ("issuer", "discovery_url", "client_id", "scopes", "groups_claim")
    return {"enabled": True, "secret": OIDC_SECRET, **{key: values[key] for key in shown}}


def mail_context(instance: Instance) -> dict[str, Any]:
    """The relay as templates see it, the password aside (it stays in the Secret): values
    apps must spell their own way (Vaultwarden's SMTP_SECURITY, Nextcloud's local part and
    domain of the from-address) are made here, in Jinja."""
    relay = instance.mail if instance.app.requires_mail else {}
    if not relay:
        return {"enabled": False}
    local, _, domain = relay["from"].rpartition("@")
    return {
        "enabled": True,
        "secret": MAIL_SECRET,
        "host": relay["host"],
        "port": int(relay["port"]),
        "tls": relay["tls"],
        "user": relay["user"],
        "from": relay["from"],
        "from_local_part": local,
        "from_domain": domain,
    }


APACHE_MAX_BODY = 2147483647  # LimitRequestBody's largest value (Apache 2.4 core docs)
SIZE_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def size_in_bytes(size: str) -> int:
    """'10G', '512M', '50Gi' -> bytes (binary units, as PHP's and Kubernetes' are)."""
    text = str(size).strip().removesuffix("i")
    if not text[:-1].isdigit() or text[-1:] not in SIZE_UNITS:
        raise RenderError(f"{size!r} is not a size such as 512M or 10G.", section="filters")
    return int(text[:-1]) * SIZE_UNITS[text[-1]]


def apache_body_limit(size: str) -> str:
    """Apache's LimitRequestBody for an upload limit: the bytes, or 0 (no limit) above what
    the directive accepts."""
    wanted = size_in_bytes(size)
    return str(wanted) if wanted <= APACHE_MAX_BODY else "0"


def php_size(size: str) -> str:
    """PHP's shorthand for a size ('10G'), from either spelling libresh accepts ('10G' or
    the Kubernetes '10Gi', both binary: PHP's K, M and G are 1024-based, php.ini docs)."""
    size_in_bytes(size)  # refused here if it is no size
    return str(size).strip().removesuffix("i")


# Bounds on what one template may cost (issue 14, finding 17): a catalog may come from a
# third party, and neither `catalog validate` nor an install may hang or exhaust memory on it.
MAX_RANGE = 10_000  # items of one range() (Jinja's sandbox allows 100,000)
MAX_VALUE = 1024 * 1024  # characters of a string / items of a list a template builds
MAX_INT_BITS = 4096  # integers a template computes
MAX_RENDER_STEPS = 250_000  # loop iterations, block runs, calls and operators
MAX_RENDER_SECONDS = 5.0  # wall clock for one template file
_FORMAT_NUMBER = re.compile(r"\d+")


class _StepCodeGenerator(CodeGenerator):
    """Jinja's code generator, counting a step at the start of every block (each loop
    iteration, each macro call, each branch taken) and bounding every `~` concatenation."""

    def blockvisit(self, nodes: Iterable[nodes.Node], frame: Frame) -> None:
        self.writeline("environment.libresh_step()")
        super().blockvisit(nodes, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.libresh_bounded(")
        super().visit_Concat(node, frame)
        self.write(")")


def _weight(value: Any, seen: dict[int, int] | None = None) -> int:
    """Characters and items in a value, counting shared parts each time they appear (as
    serialising it would); stops counting once past MAX_VALUE."""
    if isinstance(value, str | bytes):
        return len(value)
    if not isinstance(value, list | tuple | dict | set | frozenset):
        return 1
    seen = {} if seen is None else seen
    if id(value) in seen:
        return seen[id(value)]
    seen[id(value)] = MAX_VALUE + 1  # a list holding itself is endless
    items: Iterable[Any] = (
        (x for pair in value.items() for x in pair) if isinstance(value, dict) else value
    )
    total = len(value)
    for item in items:
        total += _weight(item, seen)
        if total > MAX_VALUE:
            break
    seen[id(value)] = total
    return total


def _too_big(what: str) -> SecurityError:
    return SecurityError(
        f"{what} is larger than {MAX_VALUE} characters or items (libresh's limit for a value "
        "built by a template)"
    )


def _format_weight(template: str, arguments: Any) -> int:
    """An upper bound of `template % arguments` or `template.format(...)`: its text, every
    width or precision it names, and each field filled with the largest argument."""
    widths = [int(n) for n in _FORMAT_NUMBER.findall(template) if len(n) < 12]
    if any(len(n) >= 12 for n in _FORMAT_NUMBER.findall(template)) or "*" in template:
        return MAX_VALUE + 1
    values = list(arguments.values()) if isinstance(arguments, dict) else arguments
    values = values if isinstance(values, list | tuple) else [values]
    largest = max((_weight(v) if isinstance(v, str) else 20 + _weight(v)) for v in values or [0])
    fields = template.count("%") + template.count("{")
    return len(template) + sum(widths) + fields * largest


def _estimate(name: str, owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """An upper bound of the size of a string operation that can grow its input by far
    (replace, join, indent, padding, formats); 0 when the operation is not one of them."""
    text = owner if isinstance(owner, str) else ""
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str):
        old, new = args[0], str(args[1])
        count = text.count(old) if old else len(text) + 1
        return len(text) + count * max(0, len(new) - len(old))
    if name == "join" and args:
        items = args[0]
        if isinstance(items, list | tuple):
            return _weight(items) + max(len(items) - 1, 0) * len(text)
    if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
        return max(len(text), args[0])
    if name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        return len(text) + text.count("\t") * (size if isinstance(size, int) else 8)
    if name in ("format", "format_map"):
        arguments = [*args, *kwargs.values(), *(a for a in args if isinstance(a, dict))]
        return _format_weight(text, arguments)
    return 0


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    passes = getattr(function, "jinja_pass_arg", None) is not None

    @functools.wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        values = args[1:] if passes else args
        environment = next((a for a in args[:1] if isinstance(a, _BoundedEnvironment)), None)
        if environment is not None:
            environment.libresh_step()
        if values and isinstance(values[0], str | list | tuple | dict):
            estimate = _filter_estimate(name, values[0], values[1:], kwargs)
            if estimate > MAX_VALUE:
                raise _too_big(f"The result of the filter {name}")
        return _checked(function(*args, **kwargs), f"The result of the filter {name}")

    return bounded


def _filter_estimate(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    if name == "replace":
        return _estimate("replace", str(value), args, kwargs)
    if name == "join":
        separator = args[0] if args else kwargs.get("d", "")
        return _estimate("join", str(separator), (value,), {})
    if name == "center":
        return _estimate("center", str(value), args or (kwargs.get("width", 80),), {})
    if name == "format":
        return _format_weight(str(value), [*args, *kwargs.values()])
    if name == "indent":
        width = args[0] if args else kwargs.get("width", 4)
        step = width if isinstance(width, int) else len(str(width))
        return len(str(value)) + (str(value).count("\n") + 1) * step
    if name == "wordwrap":
        width = args[0] if args else kwargs.get("width", 79)
        wrap = args[3] if len(args) > 3 else kwargs.get("wrapstring") or "\n"
        lines = len(str(value)) // max(width if isinstance(width, int) else 1, 1) + 1
        return len(str(value)) + lines * len(str(wrap))
    return 0


def _checked(value: Any, what: str) -> Any:
    if isinstance(value, Iterator):  # map, select… produce items lazily: count them as they come
        return _bounded_items(value, what)
    if _weight(value) > MAX_VALUE:
        raise _too_big(what)
    return value


def _bounded_items(items: Iterator[Any], what: str) -> Iterator[Any]:
    total = 0
    for item in items:
        total += _weight(item)
        if total > MAX_VALUE:
            raise _too_big(what)
        yield item


class _BoundedEnvironment(SandboxedEnvironment):
    """Jinja's sandbox with a budget: ranges, values, integers, steps and seconds are capped,
    so a hostile template is refused quickly instead of hanging or exhausting memory."""

    code_generator_class = _StepCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%", "//"})

    def __init__(self) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            loader=_NoLoader(),
        )
        self.steps = 0
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS
        self.globals["range"] = self._range
        self.globals.pop("lipsum", None)  # makes any amount of text from one call
        self.filters["apache_body_limit"] = apache_body_limit
        self.filters["php_size"] = php_size
        for name, function in list(self.filters.items()):
            self.filters[name] = _bounded_filter(name, function)

    def libresh_step(self) -> None:
        self.steps += 1
        if self.steps > MAX_RENDER_STEPS:
            raise SecurityError(
                f"the template takes more than {MAX_RENDER_STEPS} steps (loop iterations, "
                "calls and operators): libresh's limit for one template"
            )
        if self.steps % 16 == 0 and time.monotonic() > self.deadline:
            raise SecurityError(
                f"the template takes longer than {MAX_RENDER_SECONDS:g} s to render: "
                "libresh's limit for one template"
            )

    def libresh_bounded(self, value: Any) -> Any:
        self.libresh_step()
        return _checked(value, "A concatenation (~)")

    def _range(self, *args: Any) -> range:
        self.libresh_step()
        numbers = range(*args)
        if len(numbers) > MAX_RANGE:
            raise SecurityError(
                f"range() of {len(numbers)} numbers: at most {MAX_RANGE} are allowed"
            )
        return numbers

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self.libresh_step()
        integers = all(isinstance(v, int) for v in (left, right))
        if (
            operator == "**"
            and integers
            and abs(left) > 1
            and right > 0
            and left.bit_length() * right > MAX_INT_BITS
        ):
            raise SecurityError(f"a power larger than {MAX_INT_BITS} bits")
        if operator == "*" and integers:
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise SecurityError(f"a product larger than {MAX_INT_BITS} bits")
        elif operator == "*":
            count = left if isinstance(left, int) else right
            sized = right if isinstance(left, int) else left
            if isinstance(count, int) and count > 0 and _weight(sized) * count > MAX_VALUE:
                raise _too_big("A repetition (*)")
        if operator == "+" and not integers and _weight(left) + _weight(right) > MAX_VALUE:
            raise _too_big("A sum (+)")
        if operator == "%" and isinstance(left, str) and _format_weight(left, right) > MAX_VALUE:
            raise _too_big("A formatted string (%)")
        try:
            result = super().call_binop(context, operator, left, right)
        except (OverflowError, ZeroDivisionError) as error:
            raise SecurityError(f"{operator}: {error}") from None
        return _checked(result, f"The result of {operator}")

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.libresh_step()
        # str.format comes wrapped by the sandbox (the method is then __wrapped__)
        method = getattr(obj, "__wrapped__", obj)
        owner = getattr(method, "__self__", None)
        name = getattr(obj, "__name__", "")
        if isinstance(owner, str | list | dict):
            if _estimate(name, owner, args, kwargs) > MAX_VALUE:
                raise _too_big(f"The result of {name}()")
            if isinstance(owner, list | dict) and any(
                _weight(owner) + _weight(a) > MAX_VALUE for a in (*args, *kwargs.values())
            ):
                raise _too_big(f"The result of {name}()")
        return _checked(super().call(context, obj, *args, **kwargs), f"The result of {name}()")


class _NoLoader(BaseLoader):
    """Each template renders on its own: `include`, `import` and `extends` would read other
    files (Jinja without a loader fails on them with a TypeError)."""

    def get_source(self, environment: Any, template: str) -> Any:
        raise TemplateNotFound(
            template,
            f"{template!r}: a template cannot include, import or extend another "
            "(each file of templates/ renders on its own)",
        )


def _environment() -> SandboxedEnvironment:
    return _BoundedEnvironment()


def _render_text(template: Path, source: str, instance: Instance) -> str:
    """Render, stopping as soon as the text passes what the YAML reader would accept."""
    compiled = _environment().from_string(source)
    parts: list[str] = []
    size = 0
    for part in compiled.generate(template_context(instance)):
        size += len(part)
        if size > yamlfile.MAX_RENDERED_BYTES:
            raise RenderError(
                f"{template}: the template renders to more than "
                f"{yamlfile.MAX_RENDERED_BYTES // (1024 * 1024)} MiB.",
                hint="A template renders to at most that much text.",
                section="render-limits",
            )
        parts.append(part)
    return "".join(parts)


# What a template's operations raise on values of the wrong type (caught, not a crash).
TEMPLATE_PYTHON_ERRORS = (TypeError, ValueError, ArithmeticError, LookupError, AttributeError)


def _render_file(template: Path, instance: Instance) -> list[Manifest]:
    try:
        source = yamlfile.read_text(template, what="template")
    except BadInputError as error:
        raise RenderError(error.message, hint=error.hint, section="the-package") from None
    try:
        text = _render_text(template, source, instance)
    except RecursionError:
        raise RenderError(
            f"{template}: the template failed: it calls itself too deeply (endless recursion).",
            hint="Fix the template's macros so that their recursion ends.",
        ) from None
    except (TemplateError, *TEMPLATE_PYTHON_ERRORS) as error:
        raise _template_failed(template, error) from error
    try:
        loaded = yamlfile.load_all(
            text, source=f"{template} (rendered)", limit=yamlfile.MAX_RENDERED_BYTES
        )
    except yamlfile.YamlRefusedError as error:
        raise RenderError(error.message, hint=error.hint) from None
    documents = [d for d in loaded if d is not None]
    for document in documents:
        _check_object(document, template)
    return documents


def _template_failed(template: Path, error: Exception) -> RenderError:
    """Jinja's errors carry the template's line; Python's (an operation on values of the
    wrong type: text * text, 1 / 0, a filter given a list) have it in the traceback."""
    if isinstance(error, TemplateError):
        line, reason = getattr(error, "lineno", None), str(error)
    else:
        line, reason = _template_line(error), f"{type(error).__name__}: {error}"
    where = f"{template}:{line}" if line else str(template)
    section = (
        "render-limits"
        if isinstance(error, SecurityError)
        else "template-context"
        if isinstance(error, UndefinedError)
        else "templates"
    )
    return RenderError(
        f"{where}: the template failed: {reason}",
        hint="Fix the template; `libresh catalog validate` renders every version to find "
        "such errors.",
        section=section,
    )


def _template_line(error: BaseException) -> int | None:
    """The template's line where `error` was raised: Jinja rewrites the traceback so that
    the template's frames carry its file name and line numbers."""
    line = None
    trace = error.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_filename == "<template>":
            line = trace.tb_lineno
        trace = trace.tb_next
    return line


# metadata.name of most kinds: a DNS subdomain (RFC 1123), as the API server checks it.
OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _check_object(document: Any, template: Path) -> None:
    """Each rendered document is an object of an allowed kind, with the shape libresh reads
    and completes (labels, namespace, pod templates): a wrong shape is the template's error."""
    if not isinstance(document, dict):
        raise RenderError(
            f"{template}: every document must be an object (a mapping with apiVersion, kind "
            f"and metadata.name), not {_kind_of(document)}."
        )
    kind = (document.get("apiVersion"), document.get("kind"))
    if not all(isinstance(part, str) for part in kind) or kind not in ALLOWED_KINDS:
        allowed = ", ".join(sorted(k for _, k in ALLOWED_KINDS))
        raise RenderError(
            f"{template}: {kind[1]} ({kind[0]}) is not allowed in an app.",
            hint=f"Apps may create: {allowed}.",
            section="allowed-kinds",
        )
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(metadata, dict) or name is None:
        raise RenderError(
            f"{template}: {kind[1]}: metadata: expected a mapping holding name, got "
            f"{_kind_of(metadata)}.",
            hint="Every object has metadata: {name: ...}.",
        )
    if not isinstance(name, str) or len(name) > 253 or not OBJECT_NAME.fullmatch(name):
        raise RenderError(
            f"{template}: {kind[1]} {name}: metadata.name: {name!r} is not a name Kubernetes "
            "accepts (lowercase letters, digits, '-' and '.', starting and ending with a "
            "letter or digit)."
        )
    for where, value in _shaped_parts(kind[1], document):
        if value is not None and not isinstance(value, dict):
            field = ".".join(where)
            raise RenderError(
                f"{template}: {kind[1]} {name}: {field}: expected a mapping, got {_kind_of(value)}."
            )


def _kind_of(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )


def _shaped_parts(kind: str, document: Manifest) -> Iterator[tuple[tuple[str, ...], Any]]:
    """The parts of an object that must be mappings when present, outermost first."""
    metadata = document["metadata"]
    yield ("metadata", "labels"), metadata.get("labels")
    yield ("metadata", "annotations"), metadata.get("annotations")
    spec = document.get("spec")
    yield ("spec",), spec
    if kind not in POD_KINDS or not isinstance(spec, dict):
        return
    where: tuple[str, ...] = ("spec",)
    if kind == "CronJob":
        job = spec.get("jobTemplate")
        yield ("spec", "jobTemplate"), job
        spec = job.get("spec") if isinstance(job, dict) else None
        yield ("spec", "jobTemplate", "spec"), spec
        where = ("spec", "jobTemplate", "spec")
    pod = spec.get("template") if isinstance(spec, dict) else None
    yield (*where, "template"), pod
    if isinstance(pod, dict):
        pod_metadata = pod.get("metadata")
        yield (*where, "template", "metadata"), pod_metadata
        if isinstance(pod_metadata, dict):
            yield (*where, "template", "metadata", "labels"), pod_metadata.get("labels")
        yield (*where, "template", "spec"), pod.get("spec")


RESERVED_PREFIX = "libresh-"
# The libresh-* Secrets an app's pods may read: the documented connection Secrets and the
# instance's credentials (`secrets.name`). Any other (backup repository keys, the shared
# PostgreSQL admin) opens more than this instance.
READABLE_SECRETS = {"libresh-postgres", "libresh-redis", CREDENTIALS_SECRET, MAIL_SECRET}
READABLE_SECRETS.add(OIDC_SECRET)
POD_KINDS = ("Deployment", "StatefulSet", "Job", "CronJob")
SECRET_REFERENCES = {"secretKeyRef", "secretRef", "nodePublishSecretRef"}
Where = tuple[str | int, ...]


def _check_inside(template: Path, package: Path) -> None:
    """A template is a file of its package: a link leading outside the app's folder is
    refused (it would render whatever file the link names)."""
    resolved = template.resolve()
    if not resolved.is_relative_to(package):
        raise RenderError(
            f"{template}: the template is a link to {resolved}, outside the app's folder "
            f"{package}.",
            hint="Templates must be files inside the app's folder.",
            section="the-package",
        )


def _identity(document: Manifest) -> tuple[str, str, str]:
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return (str(document.get("apiVersion")), str(document.get("kind")), str(name))


def _label(document: Manifest) -> str:
    _, kind, name = _identity(document)
    return f"{kind} {name}"


def _refuse(template: Path, document: Manifest, where: Where, problem: str) -> RenderError:
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in where).lstrip(".")
    return RenderError(
        f"{template}: {_label(document)}: {field}: {problem}.",
        hint="Apps may not touch libresh's own objects, Secrets or volumes, nor widen the "
        "instance's isolation (apps/README.md#what-templates-may-not-do).",
        section="what-templates-may-not-do",
    )


def _check_app_object(document: Manifest, template: Path) -> None:
    """What an app's own template may not declare (libresh's service templates may)."""
    _, kind, name = _identity(document)
    if name.startswith(RESERVED_PREFIX):
        raise _refuse(
            template,
            document,
            ("metadata", "name"),
            f"names starting with {RESERVED_PREFIX} are reserved for libresh's own objects",
        )
    spec = document.get("spec")
    if not isinstance(spec, dict):
        return
    if kind == "NetworkPolicy":
        _check_network_policy(document, spec, template)
    if kind == "Ingress":
        for index, tls in enumerate(_items(spec.get("tls"))):
            secret = tls.get("secretName") if isinstance(tls, dict) else None
            if isinstance(secret, str) and secret.startswith(RESERVED_PREFIX):
                raise _refuse(
                    template,
                    document,
                    ("spec", "tls", index, "secretName"),
                    f"the Secret {secret} is libresh's",
                )
    for where, pod in _pod_specs(kind, spec):
        if pod.get("automountServiceAccountToken") is True:
            raise _refuse(
                template,
                document,
                (*where, "automountServiceAccountToken"),
                "app pods get no Kubernetes API token",
            )
        for path, problem in _pod_problems(pod, where):
            raise _refuse(template, document, path, problem)


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _check_network_policy(document: Manifest, spec: dict[str, Any], template: Path) -> None:
    """Policies add up: one that admits every source undoes `libresh-isolate`."""
    for index, rule in enumerate(_items(spec.get("ingress"))):
        peers = rule.get("from") if isinstance(rule, dict) else None
        if not peers:
            raise _refuse(
                template,
                document,
                ("spec", "ingress", index),
                "a rule without `from` admits traffic from everywhere (other instances included)",
            )
        for number, peer in enumerate(_items(peers)):
            where: Where = ("spec", "ingress", index, "from", number)
            if not isinstance(peer, dict) or not peer:
                raise _refuse(template, document, where, "an empty peer admits everything")
            selector = peer.get("namespaceSelector", "absent")
            if selector != "absent" and not (
                isinstance(selector, dict)
                and (selector.get("matchLabels") or selector.get("matchExpressions"))
            ):
                raise _refuse(
                    template,
                    document,
                    (*where, "namespaceSelector"),
                    "an empty namespaceSelector admits every namespace (other instances included)",
                )
            block = peer.get("ipBlock")
            cidr = block.get("cidr") if isinstance(block, dict) else None
            if isinstance(cidr, str) and cidr.endswith("/0"):
                raise _refuse(
                    template, document, (*where, "ipBlock", "cidr"), f"{cidr} admits everything"
                )


def _pod_specs(kind: str, spec: dict[str, Any]) -> list[tuple[Where, dict[str, Any]]]:
    if kind not in POD_KINDS:
        return []
    where: Where = ("spec",)
    if kind == "CronJob":
        job = spec.get("jobTemplate")
        spec = job.get("spec") if isinstance(job, dict) else None  # type: ignore[assignment]
        where = ("spec", "jobTemplate", "spec")
    template = spec.get("template") if isinstance(spec, dict) else None
    pod = template.get("spec") if isinstance(template, dict) else None
    return [((*where, "template", "spec"), pod)] if isinstance(pod, dict) else []


def _pod_problems(value: Any, where: Where) -> Iterator[tuple[Where, str]]:
    """Every reference a pod spec makes to what belongs to libresh or to the node: libresh-*
    Secrets other than READABLE_SECRETS, libresh-* volumes, hostPath volumes, API tokens."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from _pod_problems(item, (*where, index))
        return
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        here = (*where, str(key))
        if key in SECRET_REFERENCES and isinstance(item, dict):
            yield from _secret_problem(item.get("name"), (*here, "name"))
        elif key == "secret" and isinstance(item, dict):
            field = "secretName" if "secretName" in item else "name"
            yield from _secret_problem(item.get(field), (*here, field))
        elif key == "imagePullSecrets":
            for index, entry in enumerate(_items(item)):
                if isinstance(entry, dict):
                    yield from _secret_problem(entry.get("name"), (*here, index, "name"))
        elif key == "hostPath":
            yield here, "hostPath volumes reach the node's files (libresh's included)"
        elif key == "serviceAccountToken":
            yield here, "app pods get no Kubernetes API token"
        elif key == "persistentVolumeClaim" and isinstance(item, dict):
            claim = item.get("claimName")
            if isinstance(claim, str) and claim.startswith(RESERVED_PREFIX):
                yield (*here, "claimName"), f"the volume {claim} is libresh's"
        if isinstance(item, dict | list):
            yield from _pod_problems(item, here)


def _secret_problem(name: Any, where: Where) -> Iterator[tuple[Where, str]]:
    if isinstance(name, str) and name.startswith(RESERVED_PREFIX) and name not in READABLE_SECRETS:
        readable = ", ".join(sorted(READABLE_SECRETS))
        yield where, f"the Secret {name} is libresh's (apps may read {readable})"


def _finish(manifest: Manifest, instance: Instance) -> Manifest:
    """Add libresh's labels everywhere (objects and pod templates) and the namespace."""
    result = copy.deepcopy(manifest)
    metadata = result.setdefault("metadata", {})
    metadata.setdefault("labels", {}).update(instance.labels())
    if result["kind"] != "Namespace":
        metadata["namespace"] = instance.namespace
    for template in _pod_templates(result):
        template.setdefault("metadata", {}).setdefault("labels", {}).update(instance.labels())
        # No API token in app pods unless a template asks for one: least privilege.
        template.setdefault("spec", {}).setdefault("automountServiceAccountToken", False)
    return result


def _pod_templates(manifest: Manifest) -> list[dict[str, Any]]:
    spec = manifest.get("spec", {})
    if manifest["kind"] in ("Deployment", "StatefulSet", "Job"):
        return [spec.setdefault("template", {})]
    if manifest["kind"] == "CronJob":
        return [
            spec.setdefault("jobTemplate", {}).setdefault("spec", {}).setdefault("template", {})
        ]
    return []


def namespace_manifest(instance: Instance) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": instance.namespace,
            "labels": {
                # baseline: what the official images of common apps need (they start as root
                # and drop privileges); warn on anything short of restricted.
                "pod-security.kubernetes.io/enforce": "baseline",
                "pod-security.kubernetes.io/warn": "restricted",
            },
        },
    }


def network_policy_manifest(instance: Instance) -> Manifest:
    """Pods of this instance accept traffic from their own namespace and from the ingress
    controller (k3s runs Traefik in kube-system), never from other apps' namespaces."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "libresh-isolate"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {"podSelector": {}},
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                            }
                        },
                    ]
                }
            ],
        },
    }


def generated_secret_keys(app: App) -> dict[str, int]:
    """Keys of the credentials Secret that libresh generates, with their lengths: the
    parameters marked `secret: generate` and one password per backing service."""
    keys = {p.name: p.length for p in app.parameters if p.generate}
    keys.update({f"{kind}_password": 32 for kind in app.requires})
    if "postgres" in app.requires:  # the embedded server's own superuser
        keys["postgres_superuser_password"] = 32
    return keys


def _secret(name: str, values: Mapping[str, str]) -> Manifest:
    # `data`, not `stringData`: the API stores data, so what we apply is what is read back,
    # and a re-run compares equal. Labels and namespace come with the other objects' (_finish).
    return secret_manifest(name, None, values, labels={})


def credentials_secret(instance: Instance) -> Manifest:
    return _secret(CREDENTIALS_SECRET, instance.secret_values)


def connection_secret(kind: str, instance: Instance) -> Manifest:
    """The fixed, documented shape an app reads a backing service from (README, "Backing
    services"): postgres -> host, port, database, username, password, uri;
    redis -> host, port, password, uri."""
    external = instance.provider(kind) == "external"
    settings = instance.services.get(kind, {})
    host = str(settings["host"]) if external else kind
    port = str(settings.get("port") or (5432 if kind == "postgres" else 6379))
    if kind == "postgres":
        password = instance.secret_values["postgres_password"]
        # On a shared server every instance has its own role and database.
        name = (
            f"libresh_{instance.name.replace('-', '_')}"
            if external
            else instance.app.name.replace("-", "_")
        )
        sslmode = str(settings.get("sslmode", "require")) if external else "disable"
        values = {
            "host": host,
            "port": port,
            "database": name,
            "username": name,
            "password": password,
            "uri": f"postgresql://{name}:{quote(password)}@{host}:{port}/{name}?sslmode={sslmode}",
        }
    else:
        password = (
            instance.service_secrets["redis_password"]
            if external
            else instance.secret_values["redis_password"]
        )
        values = {
            "host": host,
            "port": port,
            "password": password,
            "uri": f"redis://:{quote(password)}@{host}:{port}/0",
        }
    return _secret(f"libresh-{kind}", values)
