"""`edgectl up` / `down` and failover, with real master processes, kubectl and the ApiClient."""

from __future__ import annotations

import json

import pytest
import trio
from conftest_cluster import pid_alive, start_cluster

from controlplane.client import ApiClient

pytestmark = [pytest.mark.slow, pytest.mark.kubectl]

CONFIGMAP = """
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: default}
data: {mode: edge}
"""


def test_up_serves_every_master_survives_leader_kill_and_down_stops_all(tmp_path) -> None:
    with start_cluster(tmp_path / "c", masters=3) as cluster:
        masters = cluster.masters()
        assert [m["name"] for m in masters] == ["m1", "m2", "m3"]
        for m in masters:
            assert m["log"].endswith(f"{m['name']}.log") and m["apiAddress"].startswith("https://")

        # kubectl reads the same kubeconfig: the standard namespaces exist, a write is visible
        # through every master (each kubeconfig context points at one master).
        out = cluster.kubectl("get", "namespaces", "-o", "name").stdout.split()
        assert {"namespace/default", "namespace/kube-system", "namespace/kube-node-lease"} <= set(out)
        cluster.kubectl("apply", "-f", "-", stdin=CONFIGMAP)
        for m in masters:
            got = cluster.kubectl("get", "configmap", "settings", "-o", "json",
                                  context=f"edgeplane-{m['name']}")
            assert json.loads(got.stdout)["data"] == {"mode": "edge"}

        leader = cluster.wait_for_leader()
        status = cluster.status()
        assert {m["name"] for m in status["members"]} == {"m1", "m2", "m3"}
        assert status["leaderDuties"]["holder"] == leader
        assert status["commitIndex"] >= 1 and status["term"] >= 1

        # kill -9 the leader: the client fails over and the others elect a new leader.
        killed_pid = cluster.kill(leader)
        new_leader = cluster.wait_for_leader(exclude=leader)
        assert new_leader != leader

        async def use_client() -> None:
            async with ApiClient.from_kubeconfig(str(cluster.kubeconfig)) as client:
                created = await client.create("configmaps", {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "after-failover"}, "data": {"k": "v"}})
                assert created["metadata"]["resourceVersion"]
                names = {i["metadata"]["name"] for i in (await client.list("configmaps"))["items"]}
                assert {"settings", "after-failover"} <= names

        trio.run(use_client)
        # kubectl's context for the dead master fails; the others answer.
        alive = [m for m in masters if m["name"] != leader]
        for m in alive:
            cluster.kubectl("get", "configmap", "after-failover", context=f"edgeplane-{m['name']}")

        pids = [m["pid"] for m in masters]
        cluster.down()
        assert not any(pid_alive(pid) for pid in pids), "edgectl down left a process behind"
        assert not pid_alive(killed_pid)
