"""Helpers for tests that need a real local cluster started with ``edgectl up``.

Usage from any test module::

    from conftest_cluster import LocalClusterHandle, start_cluster

    def test_x(tmp_path):
        with start_cluster(tmp_path, masters=3) as cluster:
            cluster.kubectl("get", "namespaces")

Every process is started through the real CLI (``python -m cli up``) and stopped with
``edgectl down``; a cluster is always torn down, even when the test fails. The ``tmp_path`` and
``module_tmp_path`` fixtures here give directories pytest never rotates away (import them into
a conftest.py, as tests/cluster/conftest.py does).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

# `edgectl up` returns once every master answers; on a loaded CI host that can take a while.
UP_TIMEOUT_S = 90
# A single CLI or kubectl call: includes client failover across a leader election.
CALL_TIMEOUT_S = 60


def edgectl(*args: str, check: bool = True, timeout: float = CALL_TIMEOUT_S,
            env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``edgectl`` (as ``python -m cli``) and return the finished process."""
    proc = subprocess.run(
        [sys.executable, "-m", "cli", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, input=stdin,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"edgectl {' '.join(args)} exited {proc.returncode}:\n"
                             f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


def pid_alive(pid: int) -> bool:
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class LocalClusterHandle:
    dir: pathlib.Path

    @property
    def kubeconfig(self) -> pathlib.Path:
        return self.dir / "kubeconfig"

    @property
    def token(self) -> str:
        return (self.dir / "admin-token").read_text().strip()

    def processes(self) -> list[dict[str, Any]]:
        return json.loads((self.dir / "cluster.json").read_text())["processes"]

    def process(self, name: str) -> dict[str, Any]:
        return next(p for p in self.processes() if p["name"] == name)

    def masters(self) -> list[dict[str, Any]]:
        return [p for p in self.processes() if p["role"] == "master"]

    def edgectl(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return edgectl(*args, env={"KUBECONFIG": str(self.kubeconfig)}, **kwargs)

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None,
                context: str | None = None) -> subprocess.CompletedProcess[str]:
        kubectl = shutil.which("kubectl") or "kubectl"
        argv = [kubectl, "--kubeconfig", str(self.kubeconfig)]
        if context:
            argv += ["--context", context]
        proc = subprocess.run([*argv, *args], capture_output=True, text=True,
                              timeout=CALL_TIMEOUT_S, input=stdin)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
        return proc

    def status(self) -> dict[str, Any]:
        return json.loads(self.edgectl("cluster", "status", "-o", "json").stdout)

    def wait_for_leader(self, *, exclude: str | None = None, timeout: float = 20.0) -> str:
        """The leader's name, once one (other than ``exclude``) is elected."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            proc = self.edgectl("cluster", "status", "-o", "json", check=False)
            if proc.returncode == 0:
                last = json.loads(proc.stdout)
                if last.get("leader") and last["leader"] != exclude and last.get("isLeader"):
                    return last["leader"]
            time.sleep(0.2)
        raise AssertionError(f"no leader (other than {exclude}) within {timeout}s; last status {last}")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Signal a process and wait until it is gone, sockets included."""
        record = self.process(name)
        pid = int(record["pid"])
        os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        # A multi-threaded process's leader turns zombie before its other threads have exited
        # and its sockets are closed; a master is gone once its API port refuses connections.
        if record.get("apiAddress"):
            host, port = record["apiAddress"].split("//", 1)[1].rsplit(":", 1)
            while time.monotonic() < deadline:
                try:
                    socket.create_connection((host, int(port)), timeout=1).close()
                except OSError:
                    break
                time.sleep(0.05)
        return pid

    def down(self) -> None:
        edgectl("down", "--dir", str(self.dir), "--grace", "5", check=False, timeout=60)


@contextlib.contextmanager
def start_cluster(directory: pathlib.Path, *, masters: int = 3, nodes: int = 0,
                  hollow: bool = False, node_prefix: str | None = None,
                  node_net: str | None = None) -> Iterator[LocalClusterHandle]:
    """``edgectl up`` in ``directory``; ``edgectl down`` on exit (always).

    Docker-backed nodes of clusters that may run at the same time need a unique
    ``node_prefix`` (containers are labelled by node name) and ``node_net`` (host ports).
    """
    args = ["up", "--dir", str(directory), "--masters", str(masters), "--timeout", str(UP_TIMEOUT_S)]
    if nodes:
        args += ["--nodes", str(nodes)]
    if node_prefix:
        args += ["--node-prefix", node_prefix]
    # Other test runs on this machine start clusters too: a random /24 for this one's nodes
    # keeps their host ports apart.
    args += ["--node-net", node_net or f"127.{random.randint(100, 199)}.{random.randint(1, 254)}"]
    if hollow:
        args.append("--hollow")
    handle = LocalClusterHandle(pathlib.Path(directory).absolute())
    try:
        edgectl(*args, timeout=UP_TIMEOUT_S + 30)
        yield handle
    finally:
        if (handle.dir / "cluster.json").exists():
            handle.down()


@pytest.fixture
def tmp_path() -> Iterator[pathlib.Path]:
    """A private temporary directory for real processes (replaces pytest's ``tmp_path``).

    pytest removes all but the newest few ``pytest-of-<user>/pytest-N`` directories whenever a
    session starts; with several test sessions on one machine, a cluster's data directory could
    vanish under its running masters. This one is removed only by this fixture.
    """
    directory = pathlib.Path(tempfile.mkdtemp(prefix="edgeplane-test-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def module_tmp_path() -> Iterator[pathlib.Path]:
    """:func:`tmp_path` for module-scoped fixtures."""
    directory = pathlib.Path(tempfile.mkdtemp(prefix="edgeplane-test-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def cut_off(raft_port: int) -> Iterator[None]:
    """Drop every loopback packet to or from one Raft port.

    pysyncobj opens one connection per pair of replicas, from the replica whose address sorts
    higher: the replica with the lowest address only ever accepts connections, so dropping its
    port cuts it off from every peer, while its API port keeps answering."""
    table = f"edgeplane_test_cut_{raft_port}"
    rules = f"""table inet {table} {{
  chain out {{
    type filter hook output priority 0;
    tcp dport {raft_port} drop
    tcp sport {raft_port} drop
  }}
}}
"""
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], check=False)
