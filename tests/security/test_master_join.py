"""A master joins with a master join token (CA pinned, secret fetched through it), and then
serves the cluster; its log never shows the token."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time

import pytest
from conftest_cluster import edgectl, start_cluster

from cli._local import free_ports
from controlplane._security import parse_join_token

pytestmark = pytest.mark.slow

# A joining master: replica start, Raft membership change, catch-up.
JOIN_WAIT_S = 60.0


def test_master_joins_with_a_master_token(tmp_path: pathlib.Path) -> None:
    with start_cluster(tmp_path / "c", masters=1) as cluster:
        token = cluster.edgectl("token", "create", "--role", "master", "--ttl", "10m").stdout.strip()
        server = cluster.masters()[0]["apiAddress"]
        raft_port, api_port = free_ports(2)
        data_dir = tmp_path / "m2"
        log_path = tmp_path / "m2.log"
        argv = [sys.executable, "-m", "cli", "master", "join", "--server", server, "--token", token,
                "--name", "m2", "--data-dir", str(data_dir), "--raft-addr", f"127.0.0.1:{raft_port}",
                "--api-addr", f"127.0.0.1:{api_port}"]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + JOIN_WAIT_S
            members: list[str] = []
            while time.monotonic() < deadline and proc.poll() is None:
                status = json.loads(cluster.edgectl("cluster", "status", "-o", "json").stdout)
                members = sorted(m["name"] for m in status["members"] if m.get("apiAddress"))
                if members == ["m1", "m2"]:
                    break
                time.sleep(0.3)
            assert members == ["m1", "m2"], log_path.read_text()
            # The new master holds what every master holds, privately, and serves the API.
            assert (data_dir / "admin-token").read_text().strip() == cluster.token
            assert (data_dir / "ca.crt").read_bytes() == (cluster.dir / "ca.crt").read_bytes()
            out = edgectl("get", "namespaces", "-o", "name",
                          env={"KUBECONFIG": str(data_dir / "kubeconfig")}).stdout
            assert "namespace/default" in out
            cluster.edgectl("master", "remove", "m2")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        assert parse_join_token(token).secret not in log_path.read_text()
        assert "Traceback" not in log_path.read_text()
