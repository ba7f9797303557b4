"""bench/hollowcost.py at a small size, against a real local cluster: a lease lane renews its
nodes' Leases and the report gives its CPU per renewal; a hollow runner (bench.scale's) gets
pods from Deployments until every one is Ready and the report gives its CPU per 1,000 pods and
its API totals from after the pods."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ._bench_cli import refused

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_hollowcost_small_run_json_report() -> None:
    lease_nodes, nodes, pods = 20, 5, 100
    # Two 5 s summaries: one 10 s renew interval, every Lease renewed about once.
    proc = subprocess.run(
        [sys.executable, "-m", "bench.hollowcost", "--lease-nodes", str(lease_nodes),
         "--lease-summaries", "2", "--nodes", str(nodes), "--pods", str(pods), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=230)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)  # --json: only the JSON object on stdout
    lane = report["lease_lane"]
    assert lane["nodes"] == lease_nodes
    assert lane["failures_total"] == 0, lane
    assert lane["late_total"] >= 0
    # ~10 s of renewals every 10 s per Lease (the window's edges may add or miss some)
    assert 8 <= lane["span_s"] <= 20, lane
    assert lease_nodes // 2 <= lane["renewals"] <= 2 * lease_nodes * lane["span_s"] / 10, lane
    assert 0 < lane["cpu_s"] < lane["span_s"]
    # Everything the lane does in the window, per renewal: well under 0.1 CPU-s each.
    assert 0 < lane["cpu_us_per_renewal"] < 100_000
    # (cpu_s is rounded to the ms: up to 500 us off in all)
    assert lane["cpu_us_per_renewal"] == pytest.approx(
        lane["cpu_s"] / lane["renewals"] * 1e6, abs=500 / lane["renewals"] + 0.1)
    assert lane["request_p50_s"] is not None and 0 < lane["request_p50_s"] < 5

    runner = report["runner"]
    assert (runner["nodes"], runner["pods"]) == (nodes, pods)
    assert runner["pods_ready"] == pods  # one Deployment of 100 replicas, every pod Ready
    assert 0 < runner["cpu_s"] < runner["span_s"] * 2  # one process: at most both cores
    assert runner["cpu_s_per_1000_pods"] == pytest.approx(  # (cpu_s is rounded to the ms)
        runner["cpu_s"] / pods * 1000, abs=0.5 / pods + 0.0005)
    assert 0 < runner["cpu_s_per_1000_pods"] < 100
    assert runner["cpu_s_per_1000_pods_above_idle"] <= runner["cpu_s_per_1000_pods"]
    assert 0 <= runner["idle_cpu_pct"] < 100
    # Totals written after every pod was Ready: each pod's Running status was written.
    assert runner["api_requests"] >= pods, runner
    assert 1 <= runner["api_connects"] <= runner["api_requests"]
    assert runner["pod_echoes_skipped"] >= 0
    assert report["load_1min"] >= 0


@pytest.mark.parametrize(("args", "message"), [
    (["--lease-nodes", "0", "--pods", "0"], "nothing to measure"),
    (["--pods", "-1"], "--pods must be >= 0"),
    (["--nodes", "0"], "--nodes/--lease-summaries >= 1"),
    (["--lease-summaries", "0"], "--nodes/--lease-summaries >= 1"),
    (["--rate", "-5"], "--rate/--timeout > 0"),
    (["--rate", "nan"], "--rate/--timeout > 0"),
    (["--timeout", "0"], "--rate/--timeout > 0"),
    (["--masters", "2"], "invalid choice"),
])
def test_bench_hollowcost_refuses_bad_arguments(args: list[str], message: str) -> None:
    # argparse's usage, then one line saying what is wrong (no cluster was started).
    last = refused("hollowcost", *args).strip().splitlines()[-1]
    assert last.startswith("python -m bench.hollowcost: error: ") and message in last, last
