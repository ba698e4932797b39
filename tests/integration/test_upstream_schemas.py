"""The values libresh gives upstream charts, checked against the charts' own schemas (from the
pinned Go modules: tests/upstream.py), in every profile and variant. A key the chart does not
know is an error there (cert-manager's values.schema.json sets additionalProperties: false),
as `helm install` would refuse it on the server."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

from libresh_cli.infra.profile import load_profile, profile_names
from libresh_cli.infra.render import Cluster, component_values
from tests.upstream import CERT_MANAGER, cert_manager_values_schema

CLUSTERS = [Cluster(), Cluster(location="fsn1", private_network=True)]


@pytest.fixture(scope="module")
def cert_manager_schema() -> dict[str, Any]:
    return cert_manager_values_schema()


@pytest.mark.parametrize("profile", profile_names())
@pytest.mark.parametrize("cluster", CLUSTERS, ids=["plain", "hetzner-network"])
def test_cert_manager_values_follow_the_charts_schema(
    profile: str, cluster: Cluster, cert_manager_schema: dict[str, Any]
) -> None:
    component = next(c for c in load_profile(profile).components if c.name == "cert-manager")
    assert component.version == CERT_MANAGER.version  # the schema is the pinned chart's
    values = component_values(component, cluster)
    jsonschema.validate(values, cert_manager_schema)  # raises, naming the key, if not


def test_the_schema_refuses_a_key_the_chart_does_not_have(
    cert_manager_schema: dict[str, Any],
) -> None:
    """The check above can fail: a misspelt key is refused, not ignored."""
    component = next(c for c in load_profile("single").components if c.name == "cert-manager")
    values = copy.deepcopy(component_values(component, Cluster()))
    values["webhook"]["resource"] = values["webhook"].pop("resources")
    with pytest.raises(jsonschema.ValidationError, match="resource"):
        jsonschema.validate(values, cert_manager_schema)
