"""ApiClient against a real 3-master cluster in which one master is cut off from the others.

The cut-off master still answers HTTP, but cannot get anything through Raft: its writes end in
503 (nothing proposed) or 504 (proposed, outcome unknown) and its linearizable reads in 503.
The client must leave it after such an answer instead of sending every later request there.
"""

from __future__ import annotations

import dataclasses
import shutil
import time

import pytest
import trio
from conftest_cluster import LocalClusterHandle, cut_off, start_cluster

from controlplane.client import ApiClient, ApiError, ClusterUnreachable
from controlplane.kubeconfig import load_kubeconfig

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("nft") is None, reason="needs nft (apt-get install nftables)"),
]


def _cm(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": name}}


async def _check_client_leaves_the_cut_off_master(cluster: LocalClusterHandle) -> None:
    masters = cluster.masters()
    isolated = min(masters, key=lambda m: m["raftAddress"])
    others = [m["apiAddress"] for m in masters if m is not isolated]
    config = load_kubeconfig(str(cluster.kubeconfig))
    # The cut-off master first: a client that sticks to it would fail or stall on every request.
    config = dataclasses.replace(config, servers=(isolated["apiAddress"], *others))
    raft_port = int(isolated["raftAddress"].rsplit(":", 1)[1])
    with cut_off(raft_port):
        async with ApiClient(config, retry_timeout=60) as client:
            # A write through the cut-off master: either it said 503 (not applied) and the
            # client sent it elsewhere, or 504 (unknown) and the caller hears so.
            try:
                await client.create("configmaps", _cm("first"), namespace="default")
                first_applied: bool | None = True
            except ApiError as exc:
                assert exc.code == 504, exc
                first_applied = None  # unknown, as the server said
            except ClusterUnreachable as exc:
                assert exc.maybe_committed, exc
                first_applied = None
            assert client.current_server != isolated["apiAddress"]
            # The next writes go straight to a master of the majority: no 5 s store timeout.
            for i in range(5):
                started = time.monotonic()
                created = await client.create("configmaps", _cm(f"next-{i}"), namespace="default")
                assert created["data"] == {"k": f"next-{i}"}
                assert time.monotonic() - started < 3.0, "a write waited for the cut-off master"
                assert client.current_server != isolated["apiAddress"]
            listed = await client.list("configmaps", namespace="default")
            names = {item["metadata"]["name"] for item in listed["items"]}
            assert {f"next-{i}" for i in range(5)} <= names
            if first_applied:
                assert "first" in names
        # A read through the cut-off master is retried elsewhere (its barrier fails with 503).
        async with ApiClient(config, retry_timeout=60) as reader:
            got = await reader.get("configmaps", "next-0", namespace="default")
            assert got["data"] == {"k": "next-0"}
            assert reader.current_server != isolated["apiAddress"]


def test_client_leaves_a_master_cut_off_from_the_majority(tmp_path) -> None:
    with start_cluster(tmp_path, masters=3) as cluster:
        cluster.wait_for_leader()
        trio.run(_check_client_leaves_the_cut_off_master, cluster)
