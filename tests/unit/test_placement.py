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


class PodsOnly:
    """Stands for libresh's own Kube adapter (only `list` is called): the pods of a namespace."""

    def __init__(self, pods: list[dict[str, Any]]) -> None:
        self.pods = pods

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[Any]:
        assert (api_version, kind) == ("v1", "Pod")
        return self.pods


def test_runners_go_to_the_app_node_unless_they_write_to_a_node_directory() -> None:
    from libresh_cli.backup.service import _placed
    from libresh_cli.backup.storage import REPOSITORY_CLAIM

    kube = PodsOnly([pod("node-b", "nextcloud-data")])
    volumes = [{"name": "d", "persistentVolumeClaim": {"claimName": "nextcloud-data"}}]
    s3_job = {
        "metadata": {"name": "r", "namespace": "cloud"},
        "spec": {"template": {"spec": {"volumes": volumes}}},
    }
    placed = _placed(kube, s3_job)  # type: ignore[arg-type]
    affinity = placed["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    terms = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchFields"][0]["values"] == ["node-b"]
    repository = {"name": "repo", "persistentVolumeClaim": {"claimName": REPOSITORY_CLAIM}}
    path_job = {
        "metadata": {"name": "r", "namespace": "cloud"},
        "spec": {"template": {"spec": {"volumes": [*volumes, repository]}}},
    }
    assert _placed(kube, path_job) is path_job  # type: ignore[arg-type]
    # nobody uses the volume (the app is stopped for a restore): the scheduler chooses
    assert _placed(PodsOnly([]), s3_job) is s3_job  # type: ignore[arg-type]
