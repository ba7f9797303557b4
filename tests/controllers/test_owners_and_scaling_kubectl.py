"""What a kubectl user sees of two behaviours of the leader's controllers, on a real one-master
`edgectl up` cluster: scaling a Deployment mid-rollout spreads the change proportionally
(Kubernetes' Deployments doc, "Proportional scaling"), and an object with two owners outlives
the first (Kubernetes' garbage collector keeps it and drops the dangling reference).

The cluster has no node: no pod ever becomes available, so a rollout sticks exactly where
maxSurge and maxUnavailable let it, without a kubelet stand-in.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest_cluster import LocalClusterHandle, start_cluster  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.kubectl]

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 10
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 3, maxUnavailable: 2}}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: IMAGE}]
"""


def wait(check, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what} (last: {last!r})")


def rs_sizes(cluster: LocalClusterHandle) -> dict[str, int]:
    """spec.replicas of the Deployment's ReplicaSets by image, from `kubectl get rs -o json`."""
    items = json.loads(cluster.kubectl("get", "rs", "-l", "app=web", "-o", "json").stdout)["items"]
    return {r["spec"]["template"]["spec"]["containers"][0]["image"]: r["spec"]["replicas"] for r in items}


def test_kubectl_scale_mid_rollout_and_two_owners(tmp_path) -> None:
    with start_cluster(tmp_path / "c", masters=1) as cluster:
        kubectl = cluster.kubectl
        kubectl("apply", "-f", "-", stdin=DEPLOYMENT.replace("IMAGE", "edgeplane/demo:v1"))
        wait(lambda: rs_sizes(cluster) == {"edgeplane/demo:v1": 10}, "10 replicas of v1")
        kubectl("set", "image", "deployment/web", "web=edgeplane/demo:v2")
        # None available: v1 may lose 2 (maxUnavailable), 13 pods at most (maxSurge 3).
        stuck = {"edgeplane/demo:v1": 8, "edgeplane/demo:v2": 5}
        wait(lambda: rs_sizes(cluster) == stuck, "the rollout stuck at 8 old / 5 new")

        assert "scaled" in kubectl("scale", "deployment/web", "--replicas=15").stdout
        # The documentation's numbers: of the 5 more, 3 go to the old ReplicaSet, 2 to the new.
        spread = {"edgeplane/demo:v1": 11, "edgeplane/demo:v2": 7}
        wait(lambda: rs_sizes(cluster) == spread, "15 spread as 11 old / 7 new")
        for r in json.loads(kubectl("get", "rs", "-l", "app=web", "-o", "json").stdout)["items"]:
            annotations = r["metadata"]["annotations"]
            assert annotations["deployment.kubernetes.io/desired-replicas"] == "15"
            assert annotations["deployment.kubernetes.io/max-replicas"] == "18"
        wait(lambda: len(kubectl("get", "pods", "-l", "app=web", "-o", "name").stdout.split()) == 18, "18 pods")
        time.sleep(1.0)  # stays there: nothing became available, nothing more may move
        assert rs_sizes(cluster) == spread

        names = {r["spec"]["template"]["spec"]["containers"][0]["image"]: r["metadata"]["name"]
                 for r in json.loads(kubectl("get", "rs", "-l", "app=web", "-o", "json").stdout)["items"]}
        assert "scaled" in kubectl("scale", "deployment/web", "--replicas=5").stdout
        # 18 -> 8 (5 + maxSurge): round(11 * 8 / 18) = 5 old, round(7 * 8 / 18) = 3 new. The
        # rollout then goes on from there (2 more old ones may go unavailable: 3 = 5 - 2 are
        # enough), so the scale itself is what `kubectl get events` tells.
        scaled = {f"Scaled down replica set {names['edgeplane/demo:v1']} from 11 to 5",
                  f"Scaled down replica set {names['edgeplane/demo:v2']} from 7 to 3"}

        def scale_events() -> bool:
            events = json.loads(kubectl("get", "events", "-o", "json").stdout)["items"]
            return scaled <= {e.get("message") for e in events if e.get("reason") == "ScalingReplicaSet"}

        wait(scale_events, "Events: scaled down 11 -> 5 old, 7 -> 3 new")
        wait(lambda: rs_sizes(cluster) == {"edgeplane/demo:v1": 3, "edgeplane/demo:v2": 5}, "rolled on to 3 old / 5 new")

        # Two owners: the ConfigMap outlives the first and goes with the second.
        kubectl("create", "configmap", "owner-a")
        kubectl("create", "configmap", "owner-b")
        uids = {n: kubectl("get", "configmap", n, "-o", "jsonpath={.metadata.uid}").stdout for n in ("owner-a", "owner-b")}
        refs = [{"apiVersion": "v1", "kind": "ConfigMap", "name": n, "uid": uid} for n, uid in uids.items()]
        shared = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "shared", "ownerReferences": refs}, "data": {"k": "v"}}
        kubectl("create", "-f", "-", stdin=json.dumps(shared))
        kubectl("delete", "configmap", "owner-a")

        def owners() -> list[str] | None:
            got = kubectl("get", "configmap", "shared", "-o", "json", "--ignore-not-found").stdout
            if not got.strip():
                return None
            return [r["name"] for r in json.loads(got)["metadata"].get("ownerReferences") or []]

        wait(lambda: owners() == ["owner-b"], "shared keeps only owner-b's reference")
        kubectl("delete", "configmap", "owner-b")
        wait(lambda: owners() is None, "shared deleted with its last owner")
