"""bench/proxy.py runs end to end and prints one JSON object with the figures the issue asks for."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_json_has_ratios_and_update_latency() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.proxy", "--requests", "50", "--updates", "2",
         "--modes", "userspace", "--json"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    result = json.loads(done.stdout)  # --json: nothing but the object on stdout
    user = result["userspace"]
    assert user["direct"]["errors"] == 0 and user["vip"]["errors"] == 0
    for key in ("rps_ratio", "p50_ratio", "p99_ratio", "p50_overhead_ms"):
        assert isinstance(user[key], float)
    assert 0 < user["update_latency"]["max_ms"] < 5000
    assert "userspace_p50_overhead_le_1ms" in result["targets_met"]


def test_bench_rejects_bad_arguments() -> None:
    done = subprocess.run([sys.executable, "-m", "bench.proxy", "--modes", "ipvs"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown mode" in done.stderr
