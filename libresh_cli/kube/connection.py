"""From a kubeconfig to what an HTTP client needs: server address, TLS context, credentials.

The kubernetes client reads the kubeconfig (contexts, embedded certificates, exec plugins,
the KUBECONFIG search path); we keep only what it resolved and never print credentials.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from libresh_cli import yamlfile
from libresh_cli.errors import BadInputError, NotFoundError


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


def load_connection(target: KubeTarget) -> Connection:
    configuration = k8s_client.Configuration()
    config_file = str(target.kubeconfig) if target.kubeconfig else None
    if target.kubeconfig is not None and not target.kubeconfig.is_file():
        raise NotFoundError(
            f"The kubeconfig {target.kubeconfig} does not exist.",
            hint="Pass an existing file with --kubeconfig, or set KUBECONFIG.",
        )
    for path in kubeconfig_files(target):
        # The kubernetes client parses with PyYAML unbounded: it only gets files that pass.
        yamlfile.load_file(path, what="kubeconfig", limit=yamlfile.MAX_KUBECONFIG_BYTES)
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
    context_name = target.context or str(current.get("name", ""))
    try:
        ssl_context = _ssl_context(configuration)
    finally:
        _forget_key_material(configuration)
    return Connection(
        server=configuration.host,
        ssl_context=ssl_context,
        target=target,
        context_name=context_name,
        authorization=_authorization_getter(configuration),
    )


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
    return context


def _authorization_getter(configuration: k8s_client.Configuration) -> Callable[[], str | None]:
    def authorization() -> str | None:
        refresh: object = getattr(configuration, "refresh_api_key_hook", None)
        if callable(refresh):
            refresh(configuration)
        # The kubernetes client stores the whole header value here ("Bearer …" or "Basic …").
        value: object = configuration.api_key.get("BearerToken")
        return str(value) if value else None

    return authorization
