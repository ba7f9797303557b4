"""bench/failover.py end to end through `edgectl bench failover` (a real 3-master cluster)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_failover_json_report() -> None:
    proc = subprocess.run([sys.executable, "-m", "cli", "bench", "failover", "--runs", "2", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # --json: the JSON object only
    assert report["runs"] == 2 and len(report["per_run"]) == 2
    masters = {"m1", "m2", "m3"}
    for run in report["per_run"]:
        assert run["killed"] in masters
        # every phase was observed, within the bench's phase timeout
        for key in ("leader_s", "scale_acked_s", "controllers_s"):
            assert 0 < run[key] < 30, (key, run)
    assert report["controllers_s_median"] > 0
    assert report["meets_target"] == (report["controllers_s_median"] <= report["target_s"])


def test_bench_failover_rejects_bad_runs() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.failover", "--runs", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--runs must be positive" in proc.stderr
    assert "Traceback" not in proc.stderr
