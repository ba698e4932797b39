"""Instance records are read tolerantly: a newer libresh's fields are ignored, a broken record
is refused by name (issue 14, finding 4)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from libresh_cli.apps.record import HistoryEntry, InstanceRecord, RecordUnreadableError


def configmap(data: Any, namespace: str = "cloud") -> dict[str, Any]:
    text = data if isinstance(data, str) else json.dumps(data)
    return {"metadata": {"namespace": namespace}, "data": {"record.json": text}}


def written() -> dict[str, Any]:
    record = InstanceRecord("cloud", "nextcloud", "34.0.2", {"domain": "c.example.org"}, [], [])
    record.inventory = [("v1", "Secret", "libresh-credentials")]
    record.add_history(HistoryEntry("install", None, "34.0.2", "ok"))
    return dict(json.loads(record.to_configmap()["data"]["record.json"]))


def test_a_record_round_trips_and_a_newer_libreshs_fields_are_ignored() -> None:
    data = written()
    assert InstanceRecord.from_configmap(configmap(data)).inventory == [
        ("v1", "Secret", "libresh-credentials")
    ]
    data["lease_holder"] = "cron@node-1"  # a field from the future
    data["history"][0]["duration_seconds"] = 12
    read = InstanceRecord.from_configmap(configmap(data))
    assert (read.name, read.version, read.history[0].action) == ("cloud", "34.0.2", "install")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("{not json", "Expecting property name"),
        ([1, 2], "not a JSON object"),
        ({**written(), "version": 34}, "version is missing or not text"),
        ({**written(), "params": "domain=x"}, "params is not a dict"),
        ({**written(), "inventory": [["v1", "Secret"]]}, "inventory entry"),
        ({**written(), "history": "none"}, "history is not a list"),
        ({**written(), "history": [17]}, "not a JSON object"),
    ],
)
def test_a_broken_record_is_refused_by_name(data: Any, reason: str) -> None:
    with pytest.raises(RecordUnreadableError, match=reason) as refused:
        InstanceRecord.from_configmap(configmap(data, namespace="broken"))
    assert refused.value.namespace == "broken"
    assert "The record of broken" in refused.value.message
    assert "kubectl -n broken get configmap libresh-instance" in str(refused.value.hint)


def test_values_kept_in_a_record_are_checked_like_a_persons() -> None:
    """A stored storage_size with a newline would add a field to the volume claim (issue 14,
    finding 3): values from records and backups go through the same checks as --set."""
    from libresh_cli.apps.catalog import builtin_catalog
    from libresh_cli.apps.lifecycle import stored_params
    from libresh_cli.apps.schema import load_app
    from libresh_cli.errors import BadInputError

    nextcloud = load_app(builtin_catalog() / "nextcloud")
    good = {"domain": "Cloud.Example.org", "storage_size": "50Gi", "gone": "a removed parameter"}
    assert stored_params(nextcloud, good, "the record of cloud") == {
        "domain": "cloud.example.org",
        "storage_size": "50Gi",
    }
    hostile = {"domain": "c.example.org", "storage_size": "50Gi\n  volumeName: someone-else"}
    with pytest.raises(BadInputError, match="the record of cloud, parameter storage_size"):
        stored_params(nextcloud, hostile, "the record of cloud")
