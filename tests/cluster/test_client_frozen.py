"""ApiClient against a real 3-master cluster in which one master is frozen (SIGSTOP).

A frozen master's kept-alive connections stay open but nothing answers on them. The client must
give up on it after its read timeout and serve the read from another master, instead of hanging
for as long as the master stays frozen.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time

import pytest
import trio
from conftest_cluster import LocalClusterHandle, start_cluster

from controlplane.client import READ_TIMEOUT_S, ApiClient
from controlplane.kubeconfig import load_kubeconfig

pytestmark = pytest.mark.slow


async def _check_read_leaves_frozen_master(cluster: LocalClusterHandle, leader: str) -> None:
    config = load_kubeconfig(str(cluster.kubeconfig))
    async with ApiClient(config) as client:
        await client.create("configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                           "metadata": {"name": "before"}, "data": {"k": "v"}},
                            namespace="default")
    frozen = next(m for m in cluster.masters() if m["name"] != leader)
    others = [m["apiAddress"] for m in cluster.masters() if m is not frozen]
    # The frozen master first, so the client starts on it.
    config = dataclasses.replace(config, servers=(frozen["apiAddress"], *others))
    async with ApiClient(config) as client:
        # A kept-alive connection to the master, as any long-lived client has: a new connection
        # would fail its TLS handshake within the connect timeout instead.
        await client.get("configmaps", "before", namespace="default")
        assert client.current_server == frozen["apiAddress"]
        os.kill(int(frozen["pid"]), signal.SIGSTOP)
        try:
            started = time.monotonic()
            got = await client.get("configmaps", "before", namespace="default")
            took = time.monotonic() - started
            assert got["data"] == {"k": "v"}
            assert client.current_server != frozen["apiAddress"]
            # The read timeout, then the next master: not the whole time the master stays frozen.
            assert READ_TIMEOUT_S - 1 <= took < 15.0, f"the read took {took:.1f} s"
            # Later requests stay on the master that answered: no second wait.
            started = time.monotonic()
            await client.get("configmaps", "before", namespace="default")
            assert time.monotonic() - started < 3.0
        finally:
            os.kill(int(frozen["pid"]), signal.SIGCONT)


def test_client_read_leaves_a_frozen_master(tmp_path) -> None:
    with start_cluster(tmp_path, masters=3) as cluster:
        leader = cluster.wait_for_leader()
        trio.run(_check_read_leaves_frozen_master, cluster, leader)
