"""bench/scale.py at a reduced size (the full size runs on demand): a real 3-master cluster,
50 hollow nodes, 500 pods in 5 Deployments; the JSON report has every figure issue 9 asks for,
every pod ends Running and nothing failed along the way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FIELDS = {
    "all_pods_running_s", "scheduler_pods_per_s", "api_mutating_s", "api_read_s",
    "watch_event_delay_s", "master_rss_mb", "master_cpu_pct", "snapshot_bytes",
    "master_restart_s", "failover_s", "agent_rss_mb_50_pods", "master_rss_mb_per_1000_pods",
    "load_average_end",
}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_scale_reduced_size_json_report() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--nodes", "50", "--pods", "500", "--json",
         "--timeout", "150"],
        cwd=ROOT, capture_output=True, text=True, timeout=220)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)  # --json: only the JSON object on stdout
    assert FIELDS <= report.keys(), FIELDS - report.keys()
    assert report["errors"] == [] and report["error_count"] == 0
    assert report["pods_total"] == 500 and report["pods_running"] == 500
    assert report["pods_bound_seen_by_agents"] >= 500  # more if a lost node's pods were replaced
    assert 0 < report["all_pods_running_s"] < 120
    assert report["scheduler_pods_per_s"] > 0
    for key in ("api_mutating_s", "api_read_s", "watch_event_delay_s"):
        figures = report[key]
        assert figures["count"] > 0, key
        assert 0 <= figures["p50"] <= figures["p99"] <= figures["max"] < 30, (key, figures)
    assert set(report["master_rss_mb"]) == {"m1", "m2", "m3"}
    assert all(0 < mb < 4096 for mb in report["master_rss_mb"].values())
    assert 0 < report["agent_rss_mb_50_pods"] < 200
    assert 0 < report["failover_s"] < 30
    assert 0 < report["master_restart_s"] < 120


def test_bench_scale_rejects_bad_sizes() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.scale", "--nodes", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--nodes and --pods must be >= 1" in proc.stderr
    assert "Traceback" not in proc.stderr
