"""The apps' side of the cluster's SMTP relay (libresh_cli/mail): what an instance that
requires mail is given, and which installed instances require it.

An instance gets the relay at every install and upgrade, as it is set then: its templates turn
it into the app's own variables (apps/README.md, "Email"), so a relay changed later reaches an
instance when it is applied again (`libresh install APP --name NAME`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from libresh_cli.apps.model import App
from libresh_cli.apps.record import RECORD_SELECTOR, InstanceRecord, Status
from libresh_cli.errors import LibreshError
from libresh_cli.mail.store import read_relay

if TYPE_CHECKING:
    from libresh_cli.apps.catalog import Catalog
    from libresh_cli.kube.client import KubeClient


def mail_for(kube: KubeClient, app: App) -> dict[str, str]:
    """The connection values (host, port, tls, user, password, from) for an instance of
    `app`: {} when the app sends no mail or no relay is set (the app is installed with mail
    off, and the install says so)."""
    if not app.requires_mail:
        return {}
    relay = read_relay(kube)
    return relay.connection_values() if relay else {}


def no_relay_warning(instance: str, app: App) -> str:
    return (
        f"{instance} ({app.name}) sends mail, and no SMTP relay is set: it is installed with "
        f"mail off. Set one with `libresh mail set …`, then apply it to {instance} with "
        f"`libresh install {app.name} --name {instance} --yes`."
    )


@dataclass(frozen=True)
class MailingInstance:
    name: str
    app: str

    @property
    def apply_command(self) -> str:
        return f"libresh install {self.app} --name {self.name} --yes"


def instances_requiring_mail(kube: KubeClient, catalog: Catalog) -> list[MailingInstance]:
    """Installed instances whose app requires mail (apps the catalog no longer has, and
    unreadable records, are left out: they cannot be applied again anyway)."""
    found = []
    for configmap in kube.list("v1", "ConfigMap", label_selector=RECORD_SELECTOR):
        try:
            record = InstanceRecord.from_configmap(configmap)
            requires = catalog.load(record.app).requires_mail
        except LibreshError:  # an unreadable record, an app the catalog does not have
            continue
        if requires and record.status != Status.UNINSTALLED:
            found.append(MailingInstance(record.name, record.app))
    return sorted(found, key=lambda i: i.name)
