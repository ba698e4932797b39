"""k3s on a host: the config file libresh writes, versions, and what a (re-)run must do.
Pure: no I/O beyond reading the profile file."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import yaml

from libresh_cli import yamlfile
from libresh_cli.errors import BadInputError, ConflictError
from libresh_cli.settings import bootstrap_file

# Tested with this libresh release (the lab runs the same Kubernetes minor).
DEFAULT_K3S_VERSION = "v1.34.4+k3s1"
CHANNELS = ("stable", "latest", "testing")
CONFIG_PATH = "/etc/rancher/k3s/config.yaml"
KUBECONFIG_PATH = "/etc/rancher/k3s/k3s.yaml"
PROFILES = ("single", "ha")
CONFIG_HEADER = (
    "# Written by libresh (`libresh bootstrap`). Re-running it keeps keys added here by hand,\n"
    "# and sets its own ones back. k3s reads this file when it starts.\n"
)
VERSION_PATTERN = re.compile(r"v(\d+)\.(\d+)\.(\d+)\+k3s(\d+)")
NODE_NAME_PATTERN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?")


def parse_version(version: str, option: str = "--k3s-version") -> tuple[int, int, int, int]:
    match = VERSION_PATTERN.fullmatch(version)
    if match is None:
        raise BadInputError(
            f"{option} {version!r} is not a k3s version.",
            hint=f"Give a release name like {DEFAULT_K3S_VERSION} (see "
            "https://github.com/k3s-io/k3s/releases), or --k3s-channel stable.",
        )
    major, minor, patch, build = (int(g) for g in match.groups())
    return major, minor, patch, build


def check_channel(channel: str) -> str:
    if channel not in CHANNELS and not re.fullmatch(r"v\d+\.\d+", channel):
        raise BadInputError(
            f"--k3s-channel {channel!r} is not a k3s release channel.",
            hint=f"Use {', '.join(CHANNELS)}, or a minor version like v1.34.",
        )
    return channel


def profile_settings(profile: str) -> dict[str, Any]:
    if profile not in PROFILES:
        raise BadInputError(
            f"Unknown profile {profile!r}.", hint=f"Profiles: {', '.join(PROFILES)}."
        )
    loaded = yamlfile.load_file(bootstrap_file(f"k3s/{profile}.yaml"), what="k3s profile")
    return dict(loaded or {})


def check_node_name(name: str) -> str:
    if not NODE_NAME_PATTERN.fullmatch(name):
        raise BadInputError(
            f"The node name {name!r} is not valid for Kubernetes.",
            hint="Give --node-name with lowercase letters, digits, '-' and '.' "
            "(the host's name is used by default).",
        )
    return name


def wanted_settings(
    profile: str, *, address: str, node_name: str, storage_path: str | None = None
) -> dict[str, Any]:
    settings = {
        "write-kubeconfig-mode": "0600",  # it holds the cluster admin's key
        "node-name": node_name,
        "tls-san": [address],
        **profile_settings(profile),
    }
    if storage_path is not None:
        # Where k3s' local-path provisioner keeps volumes (e.g. a bigger data disk).
        settings["default-local-storage-path"] = check_storage_path(storage_path)
    return settings


def check_storage_path(path: str) -> str:
    if not path.startswith("/") or any(c in path for c in "\n'\"$`"):
        raise BadInputError(
            f"--storage-path {path!r} is not a plain absolute path.",
            hint="Give the directory on the server where volumes go, e.g. /srv/libresh.",
        )
    return path.rstrip("/") or "/"


@dataclass(frozen=True)
class ConfigPlan:
    text: str
    changed: bool
    kept_keys: tuple[str, ...]  # keys someone added by hand, kept as they are


def read_host_config(text: str | None) -> Any:
    """The host's k3s config as libresh reads it. k3s itself (Go YAML) accepts anchors and
    larger files than libresh's bounded reader: such a file is not replaced (it holds hand-made
    settings and the cluster token) but refused, with what to do."""
    try:
        return yamlfile.load(text or "", source=CONFIG_PATH)
    except yamlfile.YamlRefusedError as error:
        raise BadInputError(
            f"{error.message} libresh does not rewrite it: it may hold your own settings and "
            "the cluster's token.",
            hint=f"Write {CONFIG_PATH} on the host without anchors (&) or aliases (*), then run "
            "the same command again.",
        ) from error


def plan_config(current_text: str | None, wanted: dict[str, Any]) -> ConfigPlan:
    """Our keys over whatever the file has; a change only when a value differs."""
    current = read_host_config(current_text) or {}
    if not isinstance(current, dict):
        current = {}
    merged = {**current, **wanted}
    kept = tuple(sorted(k for k in current if k not in wanted))
    text = CONFIG_HEADER + yaml.safe_dump(merged, sort_keys=False, default_flow_style=False)
    return ConfigPlan(text=text, changed=merged != current, kept_keys=kept)


class Action(StrEnum):
    INSTALL = "install"  # no k3s yet
    CHANGE_VERSION = "change-version"  # another version asked for (upgrade only)
    RECONFIGURE = "reconfigure"  # same version, config changed: the installer restarts k3s
    START = "start"  # installed but not running (e.g. an interrupted run): run the installer
    NOTHING = "nothing"


@dataclass(frozen=True)
class InstallPlan:
    action: Action
    version: str | None  # what INSTALL_K3S_VERSION gets; None with a channel
    channel: str | None
    installed: str | None

    @property
    def runs_installer(self) -> bool:
        return self.action is not Action.NOTHING


def plan_install(
    *,
    installed: str | None,
    running: bool,
    config_changed: bool,
    version: str | None,
    channel: str | None,
) -> InstallPlan:
    """What the installer must do. A downgrade is refused: k3s' datastore cannot go back."""
    if installed is None:
        wanted = version or (None if channel else DEFAULT_K3S_VERSION)
        return InstallPlan(Action.INSTALL, wanted, channel, None)
    if version is not None and version != installed:
        check_version_change(installed, version, where="the host")
        return InstallPlan(Action.CHANGE_VERSION, version, None, installed)
    # With k3s installed, a channel is not re-resolved at every run: the version stays.
    if config_changed:
        return InstallPlan(Action.RECONFIGURE, installed, None, installed)
    if not running:
        return InstallPlan(Action.START, installed, None, installed)
    return InstallPlan(Action.NOTHING, installed, None, installed)


def check_version_change(current: str, wanted: str, *, where: str) -> None:
    """Refuse a downgrade (k3s' datastore cannot go back) and a skipped minor version
    (Kubernetes supports moving one minor at a time)."""
    now, then = parse_version(current, f"k3s on {where}"), parse_version(wanted)
    if then < now:
        raise ConflictError(
            f"k3s {current} runs on {where}; going back to {wanted} is not possible (its "
            "datastore has already been migrated).",
            hint="Give a version at least as new as the one running (or leave it out to keep "
            f"{current}).",
        )
    if then[0] == now[0] and then[1] - now[1] > 1:
        raise ConflictError(
            f"k3s {current} runs on {where}; {wanted} would skip a minor version, which "
            "Kubernetes does not support.",
            hint=f"Upgrade one minor version at a time: first to a v1.{now[1] + 1}.x release.",
        )
