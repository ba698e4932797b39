"""The relay setting in the cluster: one Secret, libresh-system/libresh-mail, whose keys are
those of the Secret apps get (relay.CONNECTION_KEYS). A Secret (not a ConfigMap beside one)
because the password belongs with the rest, and whoever may read one may read the other."""

from __future__ import annotations

from typing import TYPE_CHECKING

from libresh_cli.kube.store import SYSTEM_NAMESPACE, SettingsStore, read_secret
from libresh_cli.mail.relay import Relay, check

if TYPE_CHECKING:
    from libresh_cli.kube.client import KubeClient

RELAY_SECRET = "libresh-mail"  # noqa: S105 - the Secret's name, in libresh-system
# Only its Secret is used: the store makes the namespace and applies the Secret.
_STORE = SettingsStore(RELAY_SECRET, None, RELAY_SECRET)


def read_relay(kube: KubeClient) -> Relay | None:
    """The cluster's relay, or None when none is set."""
    values = read_secret(kube, RELAY_SECRET, SYSTEM_NAMESPACE)
    return Relay.from_values(values) if values else None


def save_relay(kube: KubeClient, relay: Relay) -> Relay:
    """Checked before anything is written: a refused value leaves the stored relay as it was."""
    _STORE.write_secrets(kube, check(relay).connection_values())
    return relay


def delete_relay(kube: KubeClient) -> bool:
    """True when there was a relay to delete."""
    return kube.delete("v1", "Secret", RELAY_SECRET, SYSTEM_NAMESPACE)
