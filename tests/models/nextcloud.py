"""A MODEL of the official Nextcloud image (docker.io/library/nextcloud) and of the PostgreSQL
it talks to — not the image. The image cannot be built or pulled here (no container registry),
so this reproduces the upstream rules libresh's Nextcloud package relies on, each with its
source, and nothing else:

E1  nextcloud/docker docker-entrypoint.sh: the version on the volume (version.php) above the
    image's -> exit 1 "Can't start Nextcloud because the version of the data ... is higher
    than the docker image version"; a major skipped -> exit 1; otherwise, when the image is
    newer, its code is copied onto the volume first (rsync), then a new instance is
    installed (occ maintenance:install with POSTGRES_*) or an existing one upgraded
    (`occ upgrade`, whose failure ends the entrypoint); then Apache starts.
E2  same file: a hook Job's `command` replaces the image's entrypoint, so its occ runs the code
    that is on the volume, without any of the above.
U1  nextcloud/server core/Command/Upgrade.php: `occ upgrade` upgrades when Util::needUpgrade()
    (exit 0), else exits 2 (ERROR_MAINTENANCE_MODE) in maintenance mode, else 0 (up to date).
U2  nextcloud/server lib/private/Updater.php: the upgrade turns maintenance mode on and back
    off only if it was off when it started; it stays on if it was on.
U3  nextcloud/server lib/private/Console/Application.php, core/register_command.php: core
    commands exist whenever Nextcloud is installed (also in maintenance mode and with an
    upgrade pending); app commands only when neither (none is modelled: libresh runs none).
S1  nextcloud/server status.php: 200 with installed, maintenance, needsDbUpgrade in every state
    that can read its database, 500 when it cannot (the probes in templates/deployment.yaml).
L1  apps/nextcloud/templates/deployment.yaml's probes: the startup probe passes once Apache
    answers, then the liveness probe restarts a container whose status.php says not installed
    or an upgrade pending in maintenance mode — after a failed install or `occ upgrade` the
    restarted container (versions equal, Apache up) is restarted again and the pod
    crash-loops: a start() that fails stands for that.
I1  nextcloud/server lib/private/Setup/PostgreSQL.php: a database user with CREATEROLE makes the
    installer create the role `oc_admin`, which it writes to config.php as dbuser and which
    then owns every table; a user without it is used as it is.
P1  PostgreSQL: only a table's owner or a superuser may use it unless granted (the dumps are
    taken with --no-privileges); a restore of a --no-owner dump makes the restoring role the
    owner of everything (pg_dump docs, --no-owner).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


@dataclass
class Database:
    """One PostgreSQL database and the roles of its server."""

    superusers: set[str] = field(default_factory=lambda: {"postgres"})
    # role -> may create roles (CREATEROLE); superusers may too
    roles: dict[str, bool] = field(default_factory=dict)
    owner: str | None = None  # of Nextcloud's tables (None: no tables yet)
    schema_version: str | None = None  # the Nextcloud version the tables were migrated to
    files: int = 0  # rows standing for users' data, to see what a restore brings back

    def can_log_in(self, role: str) -> bool:
        return role in self.superusers or role in self.roles

    def can_read(self, role: str) -> bool:  # P1
        return role in self.superusers or (self.can_log_in(role) and role == self.owner)

    def can_create_roles(self, role: str) -> bool:
        return role in self.superusers or self.roles.get(role, False)


@dataclass
class Volume:
    """/var/www/html: code (version.php) and config/config.php."""

    code: str | None = None
    config: dict[str, object] = field(default_factory=dict)
    files: int = 0

    @property
    def installed(self) -> bool:
        return bool(self.config.get("installed"))

    @property
    def maintenance(self) -> bool:
        return bool(self.config.get("maintenance"))


@dataclass(frozen=True)
class Outcome:
    code: int
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 0


@dataclass
class Connection:
    """What the instance's Secret libresh-postgres says (POSTGRES_* in the pod)."""

    host: str
    database: str
    user: str


@dataclass
class NextcloudModel:
    volume: Volume = field(default_factory=Volume)
    db: Database = field(default_factory=Database)
    # an upgrade to this version fails inside `occ upgrade` (a broken migration)
    broken_migration_to: str | None = None
    log: list[str] = field(default_factory=list)

    # -- the image's entrypoint (E1) ----------------------------------------------------------

    def start(self, image: str, conn: Connection) -> Outcome:
        installed = self.volume.code or "0.0.0"
        if version_key(installed) > version_key(image):
            return self._note(
                Outcome(
                    1,
                    f"Can't start Nextcloud because the version of the data ({installed}) is "
                    f"higher than the docker image version ({image})",
                )
            )
        if version_key(image) > version_key(installed):
            if installed != "0.0.0" and version_key(image)[0] > version_key(installed)[0] + 1:
                return self._note(
                    Outcome(1, f"upgrading from {installed} to {image} skips a major")
                )
            self.volume.code = image  # rsync of the new code onto the volume
            if installed == "0.0.0":
                self._install(image, conn)
            else:
                upgraded = self.occ(["upgrade"])
                if not upgraded.ok:
                    return self._note(Outcome(1, f"occ upgrade failed: {upgraded.message}"))
        return self._note(Outcome(0, f"apache runs {image}"))

    def _install(self, image: str, conn: Connection) -> None:  # I1
        user = conn.user
        if self.db.can_create_roles(user):
            user = "oc_admin"
            self.db.roles[user] = False
        self.volume.config = {
            "installed": True,
            "maintenance": False,
            "dbhost": conn.host,
            "dbname": conn.database,
            "dbuser": user,
        }
        self.db.owner, self.db.schema_version = user, image

    # -- status.php (S1): what the probes ask ---------------------------------------------

    def status(self) -> dict[str, bool] | None:
        """The JSON of status.php, or None for its 500."""
        if not self.volume.installed:
            return {"installed": False, "maintenance": False, "needsDbUpgrade": False}
        if not self._db_usable():
            return None
        return {
            "installed": True,
            "maintenance": self.volume.maintenance,
            "needsDbUpgrade": self.db.schema_version != self.volume.code,
        }

    def ready(self) -> bool:
        """The readiness probe of templates/deployment.yaml."""
        status = self.status()
        return bool(status and status["installed"] and not status["needsDbUpgrade"])

    def _db_usable(self) -> bool:
        config = self.volume.config
        user = str(config.get("dbuser", ""))
        return self.db.can_read(user) and self.db.owner is not None

    # -- occ, as a hook Job runs it (E2, U1-U3) --------------------------------------------

    def occ(self, args: list[str]) -> Outcome:
        command = args[0] if args else ""
        if not self.volume.installed:
            return self._note(Outcome(1, f"occ {command}: Nextcloud is not installed"))
        if command == "maintenance:mode":
            self.volume.config["maintenance"] = "--on" in args
            return self._note(Outcome(0, f"maintenance {'on' if '--on' in args else 'off'}"))
        if not self._db_usable():
            return self._note(Outcome(1, f"occ {command}: cannot use the database"))
        needs_upgrade = self.db.schema_version != self.volume.code
        if command == "upgrade":
            if needs_upgrade:
                return self._upgrade()
            if self.volume.maintenance:  # U1
                return self._note(Outcome(2, "Nextcloud is in maintenance mode"))
            return self._note(Outcome(0, "No upgrade required"))
        if command == "config:system:set":
            self.volume.config[args[1]] = args[-1]
        return self._note(Outcome(0, f"occ {command}"))

    def _upgrade(self) -> Outcome:  # U2
        target = str(self.volume.code)
        was_on = self.volume.maintenance
        self.volume.config["maintenance"] = True
        if target == self.broken_migration_to:
            return self._note(Outcome(5, f"a migration to {target} failed"))
        self.db.schema_version = target
        if not was_on:
            self.volume.config["maintenance"] = False
        return self._note(Outcome(0, f"upgraded to {target}"))

    def write_db_config(self, conn: Connection) -> Outcome:
        """The post_restore step db-config: config.php gets this instance's connection."""
        self.volume.config.update(
            {"dbhost": conn.host, "dbname": conn.database, "dbuser": conn.user}
        )
        return self._note(Outcome(0, "db-config"))

    # -- backups (the runner: pg_dump --no-owner, restic) -----------------------------------

    def snapshot(self, conn: Connection) -> tuple[Volume, Database]:
        if not self.db.can_read(conn.user):
            raise AssertionError(f"pg_dump as {conn.user} cannot read the tables (P1)")
        return copy.deepcopy(self.volume), copy.deepcopy(self.db)

    def restore(self, taken: tuple[Volume, Database], conn: Connection) -> None:
        volume, database = copy.deepcopy(taken)
        self.volume = volume
        # The dump goes into this instance's own server, as its connection's role (P1).
        self.db.owner = conn.user
        self.db.schema_version = database.schema_version
        self.db.files = database.files
        self._note(Outcome(0, f"restored as {conn.user}"))

    def _note(self, outcome: Outcome) -> Outcome:
        self.log.append(f"{outcome.code} {outcome.message}")
        return outcome


def run_hook_command(model: NextcloudModel, command: list[str], conn: Connection) -> Outcome:
    """What a hook step of apps/nextcloud/app.yaml does to the model. A command the model does
    not know fails the test: a new hook must be modelled (with its source) before it ships."""
    if command[:2] == ["php", "/var/www/html/occ"]:
        return model.occ(command[2:])
    if command[:2] == ["php", "-r"] and "dbuser" in command[2]:
        return model.write_db_config(conn)
    if command == ["sh", "/usr/local/libresh/office-link.sh"]:
        # apps/nextcloud/templates/office.yaml: occ config:app:* on richdocuments (and
        # app:install): like any occ command it needs an installed Nextcloud that can use its
        # database; the richdocuments settings themselves are not modelled.
        return model.occ(["config:app:set", "richdocuments", "wopi_url"])
    if command[:2] == ["sh", "-c"]:
        outcome = Outcome(0)
        for part in command[2].split("&&"):
            words = part.split()
            if words[:2] != ["php", "/var/www/html/occ"]:
                raise AssertionError(f"the model does not know {part.strip()!r}")
            outcome = model.occ(words[2:])
            if not outcome.ok:
                return outcome
        return outcome
    raise AssertionError(f"the model does not know the hook command {command!r}")
