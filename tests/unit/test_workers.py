"""The groups test workers get (tests/workers.py), from node ids alone."""

from __future__ import annotations

from pathlib import Path

from tests.workers import group_of

INTEGRATION = Path(__file__).resolve().parents[1] / "integration"


def test_the_real_nodes_modules_are_one_group_and_so_are_keycloaks_and_the_ssh_hosts() -> None:
    real = [p.name for p in INTEGRATION.glob("test_*_real_node.py")]
    assert len(real) >= 4
    assert {group_of(f"tests/integration/{m}::test_x[a::b]") for m in real} == {"real-node"}
    assert group_of("tests/integration/test_identity.py::t") == "keycloak"
    assert group_of("tests/integration/test_oidc_apps_lab.py::t[paperless]") == "keycloak"
    assert group_of("tests/integration/test_bootstrap_ssh.py::t") == "ssh-hosts"
    assert group_of("tests/integration/test_cluster_hetzner.py::C::t") == "ssh-hosts"
    # Every other module is its own group (its module fixtures made once).
    assert group_of("tests/integration/test_mail.py::t") == "tests/integration/test_mail.py"
    assert group_of("tests/unit/test_cli.py::t[x]") == "tests/unit/test_cli.py"
