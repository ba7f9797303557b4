"""bench/scale.py at a reduced size (the full size runs on demand): a real 3-master cluster,
50 hollow nodes, 500 pods in 5 Deployments; the JSON report has every figure issue 9 asks for,
every pod ends Running, no node Lease renewal came late (so no node was lost and no pod
replaced) and nothing failed along the way. A run that cannot finish in time ends with a
clear timeout result instead of hanging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ._bench_cli import refused

ROOT = Path(__file__).resolve().parents[2]

FIELDS = {
    "all_pods_running_s", "scheduler_pods_per_s", "api_mutating_s", "api_read_s",
    "watch_event_delay_s", "master_rss_mb", "master_cpu_pct", "snapshot_bytes",
    "master_restart_s", "failover_s", "agent_rss_mb_50_pods", "master_rss_mb_per_1000_pods",
    "load_average_end", "lease_renewals", "api_s_by_master", "hollow_runner_rss_mb_per_100_nodes",
    "hollow_runner_cpu_pct_per_100_nodes", "journal_bytes", "completed",
    "cpu_s_during_run", "cpu_s_per_1000_pods", "idle_cpu_pct", "run_s",
    "hollow_api_requests_per_connection", "master_event_loop_during_run",
}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_scale_reduced_size_json_report(tmp_path: Path) -> None:
    keep = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--nodes", "50", "--pods", "500", "--json",
         "--timeout", "150", "--keep-dir", str(keep)],
        cwd=ROOT, capture_output=True, text=True, timeout=220)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)  # --json: only the JSON object on stdout
    assert FIELDS <= report.keys(), FIELDS - report.keys()
    assert report["errors"] == [] and report["error_count"] == 0
    assert report["completed"] is True and report["failure"] is None
    assert report["timed_out"] is False
    assert report["pods_total"] == 500 and report["pods_running"] == 500
    # Every node heartbeated in time: none was lost, so no pod was replaced.
    assert report["lease_renewals"]["late"] == 0, report["lease_renewals"]
    assert report["lease_renewals"]["failures"] == 0, report["lease_renewals"]
    assert report["pods_bound_seen_by_agents"] == 500
    assert 0 < report["all_pods_running_s"] < 120
    assert report["scheduler_pods_per_s"] > 0
    for key in ("api_mutating_s", "api_read_s", "watch_event_delay_s"):
        figures = report[key]
        assert figures["count"] > 0, key
        assert 0 <= figures["p50"] <= figures["p99"] <= figures["max"] < 30, (key, figures)
    assert set(report["master_rss_mb"]) == {"m1", "m2", "m3"}
    assert set(report["api_s_by_master"]) == {"m1", "m2", "m3"}  # the probes visit every master
    assert 0 < report["hollow_runner_rss_mb_per_100_nodes"] < 1000
    # Where the CPU went adds up to the machine's CPU-seconds over the run (every core busy or
    # idle), within the sampling's rounding; masters and runners both did work.
    spent = report["cpu_s_during_run"]
    total = sum(spent.values())
    capacity = (os.cpu_count() or 1) * report["run_s"]
    assert abs(total - capacity) <= 0.15 * capacity + 1.0, (spent, capacity)
    assert spent["masters"] > 0 and spent["hollow_runners"] > 0
    per_pod = report["cpu_s_per_1000_pods"]
    assert per_pod["masters"] > 0 and per_pod["hollow_runners"] > 0
    assert report["idle_cpu_pct"]["hollow_runners_per_100_nodes"] >= 0
    assert report["hollow_api_requests_per_connection"] >= 1
    assert all(0 < mb < 4096 for mb in report["master_rss_mb"].values())
    # Every master's event loop and collector during the run; exactly one of them led.
    loops = report["master_event_loop_during_run"]
    assert set(loops) == {"m1", "m2", "m3"}, loops
    assert sum(1 for f in loops.values() if f["leader"]) == 1, loops
    for f in loops.values():
        assert f["gc_pause_ms"] >= 0 and f["stalls_over_100ms"] >= 0, loops
        assert len(f["gc_collections"]) == 3 and min(f["gc_collections"]) >= 0, loops
    assert 0 < report["agent_rss_mb_50_pods"] < 200
    assert 0 < report["failover_s"] < 30
    assert 0 < report["failover_new_leader_s"] < 30
    assert 0 < report["master_restart_s"] < 120
    # --keep-dir keeps every latency sample, with when it ended, for a look at the slow ones.
    rows = [json.loads(line) for line in (keep / "latency.jsonl").read_text().splitlines()]
    for kind, key in (("mutating", "api_mutating_s"), ("read", "api_read_s")):
        mine = sorted(r[4] for r in rows if r[1] == kind)
        assert len(mine) == report[key]["count"] and mine[-1] == pytest.approx(report[key]["max"], abs=1e-3)
    assert {r[2] for r in rows} == {"m1", "m2", "m3"}
    assert {r[3] for r in rows} == {"configmap", "pod", "deployment"}


def test_bench_scale_rejects_bad_sizes() -> None:
    assert "--nodes and --pods must be >= 1" in refused("scale", "--nodes", "0")
    assert "--runner-nice must be 0..19" in refused("scale", "--runner-nice", "25")


def test_bench_scale_refuses_a_keep_dir_holding_an_earlier_run(tmp_path: Path) -> None:
    # Its masters would start on the earlier run's data ("namespaces scale already exists").
    earlier = tmp_path / "run"
    (earlier / "cluster").mkdir(parents=True)
    (earlier / "cluster" / "m1.log").write_text("an earlier run\n")
    assert f"--keep-dir {earlier} is not empty" in refused("scale", "--keep-dir", str(earlier))
    assert (earlier / "cluster" / "m1.log").read_text() == "an earlier run\n"  # left as it was


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_bench_scale_ends_with_a_timeout_result_when_pods_are_not_running_in_time() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--nodes", "2", "--pods", "400", "--json",
         "--timeout", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 1, proc.stderr[-3000:]  # not completed
    report = json.loads(proc.stdout)
    assert report["timed_out"] is True and report["completed"] is False
    assert report["all_pods_running_s"] is None and report["meets_targets"] is False
    assert 0 <= report["pods_ready_last_seen"] < 400
    assert report["failover_s"] > 0  # the later phases still ran, bounded
    assert "Traceback" not in proc.stderr


def test_table_shows_targets_missed_and_the_timeout() -> None:
    from bench.scale import table

    report = {"nodes": 3, "pods": 30, "deployments": 1, "load_average_before": [1.0],
              "load_average_end": [2.0], "api_mutating_s": {"p99": 0.5}, "api_read_s": {"p99": 0.01},
              "all_pods_running_s": None, "failover_s": 0.7, "master_rss_mb_peak": {"m1": 100.0},
              "timed_out": True, "pods_ready_last_seen": 12, "failure": None}
    text = table(report)
    rows = {line[:34].strip(): line for line in text.splitlines()}
    assert rows["API mutating p99 (s)"].endswith("NO")
    assert rows["API read p99 (s)"].endswith("yes")
    assert rows["all pods Running (s)"].endswith("NO")
    assert rows["leader failover (s)"].endswith("yes")
    assert "TIMED OUT: 12 of 30 pods Ready" in text
