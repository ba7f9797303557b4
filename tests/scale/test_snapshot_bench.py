"""bench/snapshot.py at a small size: a real single-replica Raft store filled with a
bench.scale-like state through Raft; the JSON report gives each forced snapshot's CPU, the tick
thread's pause and the load's write latency with and without a writer, the snapshot's size, and
how long a restarted replica took to load it (the benchmark itself checks that the restarted
replica's state has the same digest)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ._bench_cli import refused

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(150)
def test_bench_snapshot_small_run_json_report() -> None:
    pods, nodes, snapshots = 2_000, 50, 3
    proc = subprocess.run(
        [sys.executable, "-m", "bench.snapshot", "--pods", str(pods), "--nodes", str(nodes),
         "--snapshots", str(snapshots), "--rate", "1000", "--baseline-s", "0.5", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=140)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)  # --json: only the JSON object on stdout
    assert (report["pods"], report["nodes"], report["rate"]) == (pods, nodes, 1000)
    # Per pod: three versions (created, bound, Running) and an Event; per node a Node and a
    # Lease; a Lease renewal every 10 pods.
    assert report["writes_filled"] == 4 * pods + 2 * nodes + -(-pods // 10)
    assert report["keys"] == 2 * pods + 2 * nodes
    # Below the 100,000-event bound, the watch history holds every write.
    assert report["history_events"] == report["writes_filled"]
    runs = report["runs"]
    assert len(runs) == snapshots
    for run in runs:
        assert 0 < run["writer_wall_s"] < 30, run
        assert 0 <= run["tick_pause_ms"] < 1_000, run
        assert run["child_cpu_s"] >= 0 and run["child_minflt"] >= 0, run
        # 0.5 s at 100 Raft entries/s: the baseline window always has writes.
        assert 0 < run["write_p99_ms_baseline"] <= run["write_max_ms_baseline"] < 10_000, run
        # A short writer may see no write end while it lives: then both are null.
        if run["write_p99_ms"] is None:
            assert run["write_max_ms"] is None, run
        else:
            assert 0 < run["write_p99_ms"] <= run["write_max_ms"] < 10_000, run
    # Writing a snapshot costs CPU (a writer thread's in this process, or a forked child's).
    assert 0 < report["total_cpu_s"] < 10
    assert report["total_cpu_s"] == pytest.approx(
        report["child_cpu_s"] + report["parent_cpu_extra_s"], abs=0.002)
    assert report["write_p99_ms_baseline"] > 0
    # Every pod and Event carries a random 128-bit uid, which no compression removes.
    assert report["snapshot_bytes"] > 16 * 2 * pods
    assert 0 < report["load_s"] < 60
    assert Path(report["code"]).name == "raftstore"


@pytest.mark.parametrize("args", [
    ["--pods", "0"],
    ["--nodes", "-3"],
    ["--snapshots", "0"],
    ["--rate", "-5"],
    ["--rate", "nan"],
    ["--baseline-s", "0"],
])
def test_bench_snapshot_refuses_bad_arguments(args: list[str]) -> None:
    # argparse's usage, then one line saying what is wrong.
    last = refused("snapshot", *args).strip().splitlines()[-1]
    assert last.startswith("python -m bench.snapshot: error: ")
    assert "must be positive" in last and args[0] in last
