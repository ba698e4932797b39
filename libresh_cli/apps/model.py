"""What an app in the catalog is, once its app.yaml has been read and validated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from libresh_cli.errors import NotFoundError

SCHEMA_VERSION = 1
PARAMETER_TYPES = ("string", "domain", "email", "integer", "boolean", "password")
SERVICE_KINDS = ("postgres", "redis")
# Requirements met by a cluster setting rather than a provider of servers (README, "Email").
MAIL = "mail"
# An OIDC client at the cluster's identity provider (README, "Single sign-on").
OIDC = "oidc"
OIDC_OPTIONS = {"redirect_paths", "scopes", "groups_claim", "optional"}
# The parameter libresh adds to an app that requires oidc: who may sign in (YunoHost's
# permissions), as a comma-separated list of groups.
ALLOWED_GROUPS = "allowed_groups"
# The parameter libresh adds when `optional: true`: single sign-on on (true) or off (false,
# the default: installs made before the app supported it stay as they are).
SSO_SWITCH = "single_sign_on"
HOOK_PHASES = (
    "post_install",
    "pre_upgrade",
    "post_upgrade",
    "rollback",
    "pre_backup",  # e.g. maintenance mode on, so files and database agree
    "post_backup",  # run even when the backup failed
    "post_restore",  # e.g. maintenance off, the clone's domain
    "post_change",  # `install` again with other settings (a new domain) on a running instance
)
ARCHITECTURES = ("amd64", "arm64", "armhf")


@dataclass(frozen=True)
class Version:
    version: str
    image: str
    # The last day upstream maintains this version's series (security and bug fixes); None
    # when the catalog does not say.
    maintained_until: date | None = None

    def maintained_on(self, day: date) -> bool:
        return self.maintained_until is None or day <= self.maintained_until

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    prompt: str
    description: str = ""
    default: Any = None
    required: bool = True
    pattern: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    generate: bool = False  # `secret: generate`: a random value kept in the instance's Secret
    length: int = 32
    # Fixed once installed: a new value is refused (a server name that is in the app's data).
    immutable: bool = False

    @property
    def secret(self) -> bool:
        return self.generate or self.type == "password"

    @property
    def flag(self) -> str:
        """How a script gives this value on the command line."""
        return "--domain" if self.name == "domain" else f"--set {self.name}=…"


@dataclass(frozen=True)
class HookStep:
    """A command run as a Job with the app's image (of the version the phase belongs to) and
    the app's volumes, so it works with RWO volumes on one node and leaves its log behind."""

    name: str
    command: tuple[str, ...]
    timeout: int = 600
    mount_volumes: bool = True
    run_as_user: int | None = None  # e.g. 33 for Nextcloud's occ, which refuses root
    # pre_backup only: also run before scheduled backups, as an init container of the
    # CronJob's pod (libresh_cli/backup/jobs.py). Only for a step that needs no post_backup
    # undo should the backup then fail: no post_backup runs after a scheduled backup.
    scheduled: bool = False


@dataclass(frozen=True)
class Health:
    workloads: tuple[str, ...] = ()  # "Deployment/name"; empty: every Deployment/StatefulSet
    timeout: int = 600


@dataclass(frozen=True)
class Web:
    service: str
    port: int


@dataclass(frozen=True)
class Use:
    """`uses: {ROLE: {apps: [...], optional: ...}}`: another app's instance this one works
    with (Nextcloud's office server), chosen at install and wired on both sides
    (libresh_cli/apps/links.py)."""

    role: str
    apps: tuple[str, ...]
    optional: bool = True


@dataclass(frozen=True)
class OidcRequirement:
    """What an app asks of its OIDC client: the paths of its domain the provider may send
    people back to, the scopes it requests, and the claim it reads groups from."""

    redirect_paths: tuple[str, ...]
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    groups_claim: str = "groups"
    optional: bool = False  # turned on per instance with the parameter single_sign_on

    def wanted(self, params: Mapping[str, Any]) -> bool:
        """Whether an instance with these values gets a client."""
        return not self.optional or params.get(SSO_SWITCH) is True


@dataclass(frozen=True)
class App:
    name: str
    description: str
    homepage: str
    license: str
    architectures: tuple[str, ...]
    versions: tuple[Version, ...]
    parameters: tuple[Parameter, ...]
    requires: tuple[str, ...]
    directory: Path
    one_major_at_a_time: bool = True
    resources: dict[str, str] = field(default_factory=dict)
    health: Health = field(default_factory=Health)
    hooks: dict[str, tuple[HookStep, ...]] = field(default_factory=dict)
    backup_volumes: tuple[str, ...] = ()
    backup_databases: tuple[str, ...] = ()
    web: Web | None = None
    # One lowercase word that groups apps in `catalog list` and `catalog search` (office,
    # files, notes...); "other" when app.yaml does not say.
    category: str = "other"
    uses: tuple[Use, ...] = ()
    # `requires: {mail: {}}`: the instance gets the cluster's SMTP relay (libresh mail set).
    requires_mail: bool = False
    # `requires: {postgres: {locale: C}}`: the database's collation and ctype (Synapse
    # refuses any other than C); "" for the server's default.
    postgres_locale: str = ""
    # `requires: {oidc: {...}}`: a client at the cluster's identity provider.
    oidc: OidcRequirement | None = None
    # `sso_note`: a sentence `catalog show` gives beside whether the app signs in with the
    # identity provider: why it cannot, or which versions can.
    sso_note: str = ""

    @property
    def latest(self) -> Version:
        return self.versions[-1]

    def version(self, wanted: str) -> Version | None:
        return next((v for v in self.versions if v.version == wanted), None)

    def running_version(self, instance: str, running: str) -> Version:
        """The catalog's entry for the version an instance runs; an error that says so when
        the catalog no longer has it (a catalog older than the install, or edited)."""
        found = self.version(running)
        if found is None:
            raise NotFoundError(
                f"{instance} runs {self.name} {running}, which the catalog no longer has.",
                hint="Use the catalog it was installed from (--catalog), or a newer libresh: "
                "its catalog keeps every version it ever offered.",
            )
        return found

    def parameter(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)

    @property
    def templates(self) -> list[Path]:
        return sorted((self.directory / "templates").glob("*.yaml"))
