"""bench/api.py end to end, small: its JSON report has every figure the issue asks for."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_api_json_report() -> None:
    args = [sys.executable, "-m", "bench.api", "--json", "--duration", "1", "--objects", "20",
            "--clients", "2", "--concurrency", "4"]
    if shutil.which("etcd") is None:
        args.append("--no-etcd")
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # --json: the JSON object only
    assert "in-process" in report["target"]
    for op in ("create", "update", "get", "list"):
        assert 0 < report["latency_ms"][op]["p50"] <= report["latency_ms"][op]["p99"]
    sustained = report["sustained"]
    assert sustained["writes_per_s"] > 0 and sustained["reads_per_s"] > 0
    assert sustained["writes"]["failed"] == 0 and sustained["reads"]["failed"] == 0
    if "--no-etcd" not in args:
        assert report["etcd"]["writes_per_s"] > 0 and report["ratio_vs_etcd"]["writes_per_s"] > 0
    assert set(report["targets"]) == {"write_p50_le_5ms", "write_p99_le_50ms", "writes_per_s_ge_2000", "reads_per_s_ge_5000"}
