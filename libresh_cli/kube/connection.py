"""From a kubeconfig to what an HTTP client needs: server address, TLS context, credentials.

The kubernetes client reads the kubeconfig (contexts, embedded certificates, exec plugins,
the KUBECONFIG search path); we keep only what it resolved and never print credentials.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from libresh_cli import yamlfile
from libresh_cli.errors import BadInputError, NotFoundError
from libresh_cli.kube.kubeconfig_extras import Extras, extras_for, selected_entries


@dataclass(frozen=True)
class KubeTarget:
    """Which kubeconfig and context were asked for, for messages ("which one was tried")."""

    kubeconfig: Path | None = None
    context: str | None = None

    def describe(self) -> str:
        source = (
            str(self.kubeconfig)
            if self.kubeconfig
            else os.environ.get("KUBECONFIG", "~/.kube/config")
        )
        context = self.context or "its current context"
        return f"kubeconfig {source}, {context}"


@dataclass
class Connection:
    server: str
    ssl_context: ssl.SSLContext | bool
    target: KubeTarget
    context_name: str
    # Returns the Authorization header value, or None; called per request so that
    # exec-plugin and OIDC tokens are refreshed by the kubernetes client when they expire.
    authorization: Callable[[], str | None] = field(default=lambda: None, repr=False)
    extras: Extras = field(default_factory=Extras)


def load_connection(target: KubeTarget) -> Connection:
    configuration = k8s_client.Configuration()
    config_file = str(target.kubeconfig) if target.kubeconfig else None
    if target.kubeconfig is not None and not target.kubeconfig.is_file():
        raise NotFoundError(
            f"The kubeconfig {target.kubeconfig} does not exist (--kubeconfig).",
            hint='For the lab: --kubeconfig "$(libresh lab kubeconfig)" (after `libresh lab '
            "up`). For a server set up with `libresh bootstrap`: --kubeconfig "
            "~/.config/libresh/kubeconfigs/CONTEXT.yaml.",
        )
    files = kubeconfig_files(target)
    if not files:
        raise _no_kubeconfig(target)
    documents = []
    for path in files:
        # The kubernetes client parses with PyYAML unbounded, and fails on wrong shapes with
        # Python's errors: it only gets files that pass.
        document = yamlfile.load_file(path, what="kubeconfig", limit=yamlfile.MAX_KUBECONFIG_BYTES)
        check_shape(document, path)
        documents.append(document)
    try:
        k8s_config.load_kube_config(
            config_file=config_file,
            context=target.context,
            client_configuration=configuration,
            persist_config=False,
        )
        _, current = k8s_config.list_kube_config_contexts(config_file=config_file)
    except ConfigException as error:
        raise _config_error(target, error) from error
    except OSError as error:  # a certificate, key or token file it names
        raise BadInputError(
            f"Could not use {target.describe()}: cannot read {error.filename}: {error.strerror}.",
            hint="Check the files the kubeconfig names, or pass another with --kubeconfig.",
        ) from None
    context_name = target.context or str(current.get("name", ""))
    if not str(configuration.host).startswith(("https://", "http://")):
        raise BadInputError(
            f"Could not use {target.describe()}: the cluster's server "
            f"{configuration.host or '(none)'!r} is not an https:// address.",
            hint="Each cluster of a kubeconfig has a server such as https://203.0.113.10:6443.",
        )
    try:
        cluster, user = selected_entries(documents, target.context)
        extras = extras_for(cluster, user, configuration.host, os.environ)
        ssl_context = _ssl_context(configuration)
    except BadInputError as error:
        raise BadInputError(
            f"Could not use {target.describe()}: {error.message}", hint=error.hint
        ) from None
    except (ssl.SSLError, OSError, ValueError) as error:
        raise BadInputError(
            f"Could not use {target.describe()}: its certificates or client key cannot be "
            f"read ({_reason(error)}).",
            hint="Check certificate-authority(-data), client-certificate(-data) and "
            "client-key(-data), or pass another kubeconfig with --kubeconfig.",
        ) from None
    finally:
        _forget_key_material(configuration)
    return Connection(
        server=configuration.host,
        ssl_context=ssl_context,
        target=target,
        context_name=context_name,
        authorization=_authorization_getter(configuration),
        extras=extras,
    )


SECTIONS = {"clusters": "cluster", "contexts": "context", "users": "user"}
TEXT_FIELDS = {
    "cluster": ("server", "certificate-authority", "certificate-authority-data"),
    "context": ("cluster", "user", "namespace"),
    "user": ("token", "tokenFile", "username", "password", "client-certificate",
             "client-certificate-data", "client-key", "client-key-data"),
}  # fmt: skip


def check_shape(document: Any, path: Path) -> None:
    """The parts of a kubeconfig the kubernetes client reads have the types it expects; it
    fails on others with Python's errors (or sends a list as a token)."""
    if document is None:
        return
    problem = _shape_problem(document)
    if problem:
        raise BadInputError(
            f"The kubeconfig {path} is not one libresh can use: {problem}.",
            hint="Check the file (`kubectl config view --kubeconfig FILE`), or pass another "
            "with --kubeconfig.",
        )


def _shape_problem(document: Any) -> str | None:
    if not isinstance(document, dict):
        return f"expected a mapping at the top, got {type(document).__name__}"
    current = document.get("current-context")
    if current is not None and not isinstance(current, str):
        return "current-context is not text"
    for section, body in SECTIONS.items():
        entries = document.get(section)
        if entries is None:
            continue
        if not isinstance(entries, list):
            return f"{section} is not a list"
        for index, entry in enumerate(entries):
            where = f"{section}[{index}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                return f"{where} is not a mapping with a name"
            fields = entry.get(body)
            if fields is None:
                continue
            if not isinstance(fields, dict):
                return f"{where}.{body} is not a mapping"
            for key in TEXT_FIELDS[body]:
                if fields.get(key) is not None and not isinstance(fields[key], str):
                    return f"{where}.{body}.{key} is not text"
            if "exec" in fields and not isinstance(fields["exec"], dict):
                return f"{where}.{body}.exec is not a mapping"
    return None


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or str(error)
    return str(reason)


def _forget_key_material(configuration: k8s_client.Configuration) -> None:
    """The kubernetes client writes a kubeconfig's embedded client key (and certificates) to
    temporary files it removes only at a normal exit (kubernetes.config.kube_config
    _create_temp_file_with_content, atexit). Once the SSL context holds them they are not
    needed: removed now, and dropped from the client's cache of those files so a later load
    writes them again instead of pointing at a removed file."""
    from kubernetes.config import kube_config

    made: dict[str, str] = getattr(kube_config, "_temp_files", {})
    ours = {configuration.key_file, configuration.cert_file}
    for content, path in list(made.items()):
        if path in ours:
            Path(path).unlink(missing_ok=True)
            del made[content]


def _no_kubeconfig(target: KubeTarget) -> NotFoundError:
    """No kubeconfig at all, whichever way it was looked for: one message, one exit code."""
    variable = os.environ.get("KUBECONFIG", "")
    where = (
        f"KUBECONFIG names {variable}, and no such file exists"
        if variable
        else "there is no ~/.kube/config and KUBECONFIG is not set"
    )
    return NotFoundError(
        f"No kubeconfig to use: {where}.",
        hint='For the lab: --kubeconfig "$(libresh lab kubeconfig)" (after `libresh lab up`). '
        "For a server set up with `libresh bootstrap`: --kubeconfig "
        "~/.config/libresh/kubeconfigs/CONTEXT.yaml.",
    )


def kubeconfig_files(target: KubeTarget) -> list[Path]:
    """The files the kubernetes client would read: --kubeconfig, else every file of
    KUBECONFIG, else ~/.kube/config (those that exist)."""
    if target.kubeconfig is not None:
        return [target.kubeconfig]
    variable = os.environ.get("KUBECONFIG", "")
    paths = [Path(p).expanduser() for p in variable.split(os.pathsep) if p] or [
        Path("~/.kube/config").expanduser()
    ]
    return [p for p in paths if p.is_file()]


def _config_error(target: KubeTarget, error: ConfigException) -> BadInputError:
    text = str(error)
    if target.context and "context" in text.lower():
        contexts = _context_names(target)
        known = ", ".join(contexts) if contexts else "none"
        return BadInputError(
            f"The context '{target.context}' is not in {target.describe()}.",
            hint=f"Known contexts: {known}. Choose one with --context.",
        )
    return BadInputError(
        f"Could not use {target.describe()}: {text}",
        hint="Check the file, or pass another with --kubeconfig.",
    )


def _context_names(target: KubeTarget) -> list[str]:
    try:
        contexts, _ = k8s_config.list_kube_config_contexts(
            config_file=str(target.kubeconfig) if target.kubeconfig else None
        )
    except ConfigException:
        return []
    return sorted(str(c["name"]) for c in contexts)


def _ssl_context(configuration: k8s_client.Configuration) -> ssl.SSLContext | bool:
    if not configuration.host.startswith("https"):
        return False
    if not configuration.verify_ssl:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.cert_file and configuration.key_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    # Python 3.13 turned OpenSSL's strict X.509 checks on in create_default_context: the same
    # checks on every Python libresh supports, so a certificate that only 3.13 would refuse
    # is found on any of them.
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context


def _authorization_getter(configuration: k8s_client.Configuration) -> Callable[[], str | None]:
    # Requests run on several threads at once (apply_all): one refresh at a time, so an exec
    # plugin whose token expired runs once, not once per thread.
    lock = threading.Lock()

    def authorization() -> str | None:
        with lock:
            return _current_authorization(configuration)

    return authorization


def _current_authorization(configuration: k8s_client.Configuration) -> str | None:
    refresh: object = getattr(configuration, "refresh_api_key_hook", None)
    if callable(refresh):
        refresh(configuration)
    # The kubernetes client stores the whole header value ("Bearer …" or "Basic …") under
    # "BearerToken" since 37.0, under "authorization" in 30.1 to 36.x: read either.
    keys = configuration.api_key
    value: object = keys.get("BearerToken") or keys.get("authorization")
    return str(value) if value else None
