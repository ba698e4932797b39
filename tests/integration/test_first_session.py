"""What a new co-op admin meets in a first session (issue 20), run as they run it: the `libresh`
command on the lab, its exit codes and the words on the screen."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from libresh_cli.apps.record import require_record
from libresh_cli.errors import ExitCode
from libresh_cli.kube.client import KubeClient, wait_for
from tests.integration.conftest import Lab
from tests.integration.test_apps import LIBRESH, TEST_CATALOG, install, libresh, ok
from tests.integration.test_one_run_at_a_time import killed_mid_step
from tests.integration.test_upgrade_safeguard import RecordingSafeguard


@pytest.fixture
def demo(lab: Lab, kube: KubeClient) -> Iterator[str]:
    name = f"f{uuid.uuid4().hex[:8]}"
    ok(install(lab, "demo", name, f"{name}.example.org", "--version", "3.0.0"))
    yield name
    kube.delete("v1", "Namespace", name)


def _listed(lab: Lab, name: str) -> dict[str, object]:
    rows = json.loads(ok(libresh(lab, "list", "-o", "json")).stdout)
    found: dict[str, object] = next(r for r in rows if r["name"] == name)
    return found


def test_list_and_status_tell_the_truth_about_health(lab: Lab, kube: KubeClient, demo: str) -> None:
    assert _listed(lab, demo)["health"] == "healthy"
    assert libresh(lab, "status", demo).returncode == 0

    kube.delete("apps/v1", "Deployment", "demo", demo)  # by hand, or by accident
    listed = libresh(lab, "list")
    assert "unhealthy: Deployment/demo is missing" in listed.stdout
    status = libresh(lab, "status", demo)
    assert status.returncode == 1, status.stdout + status.stderr
    assert "Deployment/demo is missing" in status.stdout
    assert f"libresh install demo --name {demo}" in status.stdout

    # Running install again re-makes what is missing: not "nothing to do".
    repaired = ok(install(lab, "demo", demo, f"{demo}.example.org", "--version", "3.0.0"))
    assert "nothing to do" not in repaired.stderr
    assert libresh(lab, "status", demo).returncode == 0
    assert _listed(lab, demo)["health"] == "healthy"


def test_a_crash_looping_pod_is_unhealthy(lab: Lab, kube: KubeClient, demo: str) -> None:
    kube.request(
        "PATCH",
        f"/apis/apps/v1/namespaces/{demo}/deployments/demo",
        body={"spec": {"template": {"metadata": {"labels": {"lab.libresh.dev/fail": "true"}}}}},
        content_type="application/merge-patch+json",
    )

    def crash_looping() -> dict[str, object] | None:
        row = _listed(lab, demo)
        problems = row.get("problems") or []
        return row if any("CrashLoopBackOff" in str(p) for p in problems) else None  # type: ignore[attr-defined]

    row = wait_for("the pod to crash-loop", crash_looping, timeout=60, interval=1)
    assert row["health"] == "unhealthy"
    assert libresh(lab, "status", demo).returncode == 1


def test_an_interrupted_upgrade_says_what_to_run_next(
    lab: Lab, kube: KubeClient, demo: str
) -> None:
    killed_mid_step(kube, demo, RecordingSafeguard())
    assert require_record(kube, demo).status == "upgrading"
    assert "interrupted upgrade 3.0.0 -> 4.0.0" in _listed(lab, demo)["status"]  # type: ignore[operator]
    status = libresh(lab, "status", demo)
    assert "interrupted upgrade 3.0.0 -> 4.0.0" in status.stdout
    assert (
        f"libresh upgrade {demo} (it restores backup snapshot-before-4.0.0 and 3.0.0 first)"
        in " ".join(status.stdout.split())
    )


def test_tables_are_not_cut_off_a_terminal(lab: Lab, kube: KubeClient) -> None:
    """`libresh list | grep` and cron's mail see whole lines, whatever COLUMNS says."""
    name = f"w{uuid.uuid4().hex[:8]}"
    domain = "a-rather-long-subdomain-for-the-cooperative." + "x" * 40 + ".example.org"
    try:
        ok(install(lab, "demo", name, domain, "--version", "3.0.0"))
        env = {k: v for k, v in lab.cli_env().items() if k != "COLUMNS"}
        piped = subprocess.run(
            [LIBRESH, "--kubeconfig", str(lab.kubeconfig), "--catalog", str(TEST_CATALOG), "list"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        line = next(row for row in piped.stdout.splitlines() if row.strip().startswith(name))
        assert f"https://{domain}" in line
        assert "healthy" in line
    finally:
        kube.delete("v1", "Namespace", name)


def test_two_instances_cannot_share_a_domain(lab: Lab, kube: KubeClient) -> None:
    first, second = f"d{uuid.uuid4().hex[:8]}", f"d{uuid.uuid4().hex[:8]}"
    domain = f"{first}.example.org"
    try:
        ok(install(lab, "vaultwarden", first, domain))
        refused = install(lab, "vaultwarden", second, domain)
        assert refused.returncode == ExitCode.CONFLICT, refused.stdout + refused.stderr
        assert f"The domain {domain} is already used by {first}" in refused.stderr
        assert "Choose another --domain" in refused.stderr
        assert kube.get("v1", "ConfigMap", "libresh-instance", second) is None
    finally:
        kube.delete("v1", "Namespace", first)
        kube.delete("v1", "Namespace", second)


def test_diff_shows_the_fields_a_hand_edit_changed(lab: Lab, kube: KubeClient, demo: str) -> None:
    """Issue 20, point 9: fields, not only names; a person's edit with kubectl; global
    options after the command. (A Secret's values are shown as "(changed)": unit-tested in
    test_kube_pure; the credentials Secret keeps what it holds by design.)"""
    assert libresh(lab, "diff", demo).returncode == 0
    edit = {"containers": [{"name": "demo", "image": "evil:1"}]}
    kube.request(
        "PATCH",
        f"/apis/apps/v1/namespaces/{demo}/deployments/demo",
        params={"fieldManager": "kubectl-edit"},
        body={"spec": {"template": {"spec": edit}}},
        content_type="application/strategic-merge-patch+json",
    )
    drifted = libresh(lab, "diff", demo, "-v", "--no-color")  # global options after it
    assert drifted.returncode == 1, drifted.stdout + drifted.stderr
    shown = " ".join(drifted.stdout.split())
    assert "spec.template.spec.containers[0].image: evil:1 -> example.org/demo:3.0.0" in shown
    result = libresh(lab, "diff", demo, "-o", "json")
    assert result.returncode == 1
    changes = json.loads(result.stdout)["changes"]
    (deployment,) = [c for c in changes if c["action"] == "update"]
    assert deployment["fields"] == [
        "spec.template.spec.containers[0].image: evil:1 -> example.org/demo:3.0.0"
    ]


def test_installing_again_with_another_domain_says_it_changes_the_instance(
    lab: Lab, kube: KubeClient, demo: str
) -> None:
    """Issue 20, point 3: not a silent move of a live instance, and the way to a second one."""
    moved = ok(install(lab, "demo", demo, f"new-{demo}.example.org", "--version", "3.0.0"))
    said = " ".join(moved.stderr.split())
    assert (
        f"{demo} is installed: this changes its settings "
        f"(domain: {demo}.example.org -> new-{demo}.example.org)" in said
    )
    assert "To install a second demo instead, give it its own name: --name NAME." in said
    planned = json.loads(
        ok(
            install(lab, "demo", demo, f"third-{demo}.example.org", "--dry-run", "-o", "json")
        ).stdout
    )
    assert planned["settings"] == [
        {"name": "domain", "from": f"new-{demo}.example.org", "to": f"third-{demo}.example.org"}
    ]
    # The app's own step for new settings ran (the demo's post_change hook).
    jobs = kube.list("batch/v1", "Job", demo, label_selector="libresh.dev/hook=post-change")
    assert len(jobs) == 1
    assert require_record(kube, demo).params["domain"] == f"new-{demo}.example.org"


def test_the_chosen_values_are_shown_and_credentials_are_named(
    lab: Lab, kube: KubeClient, demo: str
) -> None:
    """Issue 20, point 11: in the plan and in status (never a secret); `secret get NAME`."""
    planned = ok(install(lab, "demo", f"v{demo}", "v.example.org", "--dry-run"))
    assert "Settings" in planned.stdout and "greeting" in planned.stdout
    assert "hello" in planned.stdout
    status = ok(libresh(lab, "status", demo))
    assert f"domain: {demo}.example.org" in status.stdout and "greeting: hello" in status.stdout
    assert "api_key" not in status.stdout  # a generated secret: named by secret get only
    listed = ok(libresh(lab, "secret", "get", demo))
    assert listed.stdout.split() == ["api_key"]
    assert f"libresh secret get {demo} KEY" in listed.stderr
