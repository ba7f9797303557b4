"""One master on the in-memory development store: init, use, SIGTERM, and its log lines."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

from cli._local import free_ports


def edgectl(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True,
                          timeout=60, **kwargs)


def test_dev_master_serves_writes_and_logs_one_line_per_event(tmp_path) -> None:
    raft, api = free_ports(2)
    data = tmp_path / "m1"
    log = open(tmp_path / "m1.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "master", "init", "--dev-memory-store", "--name", "m1",
         "--data-dir", str(data), "--raft-addr", f"127.0.0.1:{raft}", "--api-addr", f"127.0.0.1:{api}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        kubeconfig = str(data / "kubeconfig")
        deadline = time.monotonic() + 90  # a busy CI host starts Python slowly
        while True:
            got = edgectl("get", "namespaces", "-o", "name", "--kubeconfig", kubeconfig)
            if got.returncode == 0 and "namespace/default" in got.stdout:
                break
            assert time.monotonic() < deadline, got.stderr
            time.sleep(0.2)
        out = edgectl("apply", "-f", "-", "--kubeconfig", kubeconfig,
                      input="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: v}\n")
        assert out.stdout.strip() == "configmap/c created", out.stderr
        status = edgectl("cluster", "status", "--kubeconfig", kubeconfig)
        assert "leader: m1" in status.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        log.close()
    lines = (tmp_path / "m1.log").read_text().splitlines()
    one_line = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARNING|ERROR) master m1( \[[\w.]+\])?: ")
    events = [line for line in lines if one_line.match(line)]
    assert any(line.endswith("master m1: became leader term=1") for line in events), lines
    assert any("SIGTERM: shutting down" in line for line in events), lines
