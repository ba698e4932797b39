"""Where one-off Jobs that mount an instance's ReadWriteOnce volumes must run."""

from __future__ import annotations

from typing import Any

from libresh_cli.apps.placement import claims_of, nodes_using, pinned_to


def pod(node: str | None, claim: str, phase: str = "Running", **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": f"p-{node}", **meta},
        "spec": {
            **({"nodeName": node} if node else {}),
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": claim}},
                {"name": "tmp", "emptyDir": {}},
            ],
        },
        "status": {"phase": phase},
    }


def test_the_node_of_live_pods_using_the_claim() -> None:
    pods = [
        pod("node-b", "nextcloud-data"),
        pod("node-c", "other-data"),  # another volume: irrelevant
        pod("node-d", "nextcloud-data", phase="Succeeded"),  # finished: holds nothing
        pod("node-e", "nextcloud-data", deletionTimestamp="2026-12-01T00:00:00Z"),
        pod(None, "nextcloud-data", phase="Pending"),  # not scheduled yet
    ]
    assert nodes_using(pods, {"nextcloud-data"}) == {"node-b"}
    assert nodes_using(pods, {"unused"}) == set()
    assert claims_of(pods[0]["spec"]) == {"nextcloud-data"}


def test_a_pinned_job_requires_the_node_by_name_and_keeps_its_own_affinity() -> None:
    job: dict[str, Any] = {
        "metadata": {"name": "hook", "namespace": "cloud"},
        "spec": {"template": {"spec": {"affinity": {"podAffinity": {"x": 1}}}}},
    }
    pinned = pinned_to(job, "node-b")
    affinity = pinned["spec"]["template"]["spec"]["affinity"]
    terms = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-b"]}]}
    ]
    assert affinity["podAffinity"] == {"x": 1}
    assert "nodeAffinity" not in job["spec"]["template"]["spec"]["affinity"]  # a copy
