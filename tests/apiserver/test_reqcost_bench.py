"""bench/reqcost.py end to end, small: a real 3-master cluster, every request kind answered,
and the figures say what they claim (a follower pays more for a write it serves and forwards
than for one it only applies)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("credentials", [[], ["--node-tokens"]])
def test_bench_reqcost_json_report(credentials: list[str]) -> None:
    args = [sys.executable, "-m", "bench.reqcost", "--json", "--requests", "300", "--nodes", "8",
            "--concurrency", "4", "--pods-per-node", "2", "--idle", "1", *credentials]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    rows = {(r["kind"], r["sent_to"]): r for r in report["rows"]}
    kinds = ("pod-status", "lease", "node-status")
    assert set(rows) == {(k, t) for k in kinds for t in ("follower", "leader")} | {
        ("get-node", "follower"), ("get-lease", "follower")}
    for kind in kinds:
        served, applied = rows[(kind, "follower")], rows[(kind, "leader")]
        assert served["follower_loop_us"] > applied["follower_loop_us"] > 0, (kind, served, applied)
        assert applied["leader_us"] > served["leader_us"] > 0, (kind, served, applied)
    for kind in ("get-node", "get-lease"):
        assert rows[(kind, "follower")]["follower_loop_us"] > 0
    assert report["settings"]["credentials"] == ("node tokens" if credentials else "admin token")
    assert set(report["masters"]) == {"leader", "follower", "other"}
