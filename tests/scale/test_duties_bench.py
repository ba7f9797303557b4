"""bench/duties.py at a small size: the leader duties turn Deployments into pods that are
bound to the nodes and become ready, and the report gives the CPU per pod of that work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ._bench_cli import refused

ROOT = Path(__file__).resolve().parents[2]


def test_bench_duties_small_run_json_report() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.duties", "--nodes", "5", "--pods", "150", "--rate", "20", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)  # --json: only the JSON object on stdout
    assert (report["nodes"], report["pods"]) == (5, 150)
    assert report["ready"] == 150  # 2 Deployments (100 + 50 replicas), every pod ready
    assert report["scheduled_events"] == 150  # one "Scheduled" Event per pod
    # each pod is created, bound and given its status; Events, ReplicaSets and statuses add more
    assert 3 < report["store_writes_per_pod"] < 10
    assert report["cpu_s"] > 0 and report["cpu_us_per_pod"] > 0


def test_bench_duties_rejects_bad_sizes() -> None:
    assert "--pods must be at least 1" in refused("duties", "--pods", "0")
