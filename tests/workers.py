"""How the suite is shared between test workers (pytest-xdist): whole groups of tests go to one
worker, each group named from a test's node id alone (the controller, which schedules, never
collects). A group is a module, so that its fixtures are made once, except that:
- the real node's modules (`*_real_node.py`) are one group: a machine runs one real node at a
  time, and they share the session's lab (integration/conftest.py real_lab);
- the modules using the session's Keycloak are one group: one Keycloak process;
- the modules using the SSH test hosts are one group: their network namespaces and addresses
  (lrtN, 10.77.N.0/24: integration/sshhosts.py) are the machine's.

xdist's own `--dist loadgroup` is not used: it marks groups by rewriting `item._nodeid`, which
pytest 9.2 no longer reads (node ids are `_id`), so every test was scheduled alone."""

from __future__ import annotations

from typing import Any

REAL_NODE_SUFFIX = "_real_node.py"
KEYCLOAK_MODULES = ("test_identity.py", "test_oidc_apps_lab.py")
SSH_HOST_MODULES = ("test_bootstrap_ssh.py", "test_cluster_hetzner.py")


def group_of(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    module = path.rsplit("/", 1)[-1]
    if module.endswith(REAL_NODE_SUFFIX):
        return "real-node"
    if module in KEYCLOAK_MODULES:
        return "keycloak"
    if module in SSH_HOST_MODULES:
        return "ssh-hosts"
    return path


def make_scheduler(config: Any, log: Any) -> Any:
    """xdist's scope scheduler with our groups as its scopes: each group is sent whole to one
    worker, in collection order (`--no-loadscope-reorder`: the real node's group, the longest,
    is collected first under workers: integration/conftest.py)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return ByGroup(config, log)
