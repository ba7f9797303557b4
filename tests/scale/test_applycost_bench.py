"""bench/applycost.py at a small size: a real 3-master cluster fed pod writes through its leader;
the JSON report gives each follower's CPU per applied write, split by thread, its wake-ups per
write and the writes per Raft entry, and every write was applied on both followers; the same for
the leader, the Raft messages per entry and the writes' latency."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ._bench_cli import refused

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_bench_applycost_small_run_json_report() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.applycost", "--pods", "20", "--rate", "40", "--seconds", "3",
         "--idle-seconds", "1", "--base-port", "0", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)  # --json: only the JSON object on stdout
    assert report["write_errors"] == 0
    assert 1_500 < report["pod_json_bytes"] < 3_000  # pod-sized, as bench.scale's pods
    followers = report["followers"]
    assert len(followers) == 2
    for f in followers:
        # ~3 s at 40 writes/s, every one applied on this follower
        assert 80 <= f["writes"] <= 160, f
        assert f["writes_per_entry"] >= 1
        assert f["cpu_us_per_write"] > 0
        assert set(f["cpu_us_per_write_by_thread"]) == {"event_loop", "raft_tick", "other"}
        assert f["cpu_us_per_write_by_thread"]["raft_tick"] > 0
        assert f["loop_wakeups_per_write"] >= 0
    assert report["cpu_us_per_write"] == pytest.approx(
        sum(f["cpu_us_per_write"] for f in followers) / 2, abs=0.01)
    # The leader is measured the same way; its tick thread replicates every entry.
    leader = report["leader"]
    assert 80 <= leader["writes"] <= 160, leader
    assert leader["cpu_us_per_write_by_thread"]["raft_tick"] > 0
    assert report["leader_tick_cpu_us_per_entry"] > 0
    # At least an append-entries to each follower and one acknowledgement per entry.
    assert report["raft_segments_per_entry"] >= 3, report
    assert 0 < report["write_p50_ms"] <= report["write_p99_ms"]
    assert report["via"] == "leader"


def test_bench_applycost_refuses_bad_arguments() -> None:
    assert "must be positive" in refused("applycost", "--rate", "0")
    assert "invalid choice" in refused("applycost", "--via", "nowhere")
