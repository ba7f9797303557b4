"""bench --cpus: the benchmark and everything it starts get that many cores' worth of CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench._cpuquota import QuotaError, check_cpus, cpu_quota

from ._bench_cli import refused

ROOT = Path(__file__).resolve().parents[2]

# Burns CPU for ``wall`` seconds of wall time in two processes, then prints the CPU-seconds
# both used (a child started inside the group is held to the quota too).
_BURN = """
import os, sys, time
wall = float(sys.argv[1])
pid = os.fork()
end = time.monotonic() + wall
while time.monotonic() < end:
    pass
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
t = os.times()
print(t.user + t.system + t.children_user + t.children_system)
"""


def test_a_quota_holds_the_processes_started_under_it_to_that_many_cores() -> None:
    if check_cpus(0.5) is not None:
        pytest.skip(check_cpus(0.5))
    try:
        with cpu_quota(0.5) as group:
            started = time.monotonic()
            out = subprocess.run([sys.executable, "-c", _BURN, "2"], capture_output=True,
                                 text=True, timeout=60, check=True)
            wall = time.monotonic() - started
    except QuotaError as exc:
        pytest.skip(str(exc))
    used = float(out.stdout)
    # Two busy processes for 2 s would use ~4 CPU-s on 2 cores; half a core allows ~1.
    assert used <= 0.5 * wall * 1.2 + 0.1, (used, wall)
    assert used >= 0.5 * 2 * 0.6, (used, wall)  # it did run, at about the quota
    assert not group.exists()  # removed afterwards
    with open("/proc/self/cgroup") as f:
        assert group.name not in f.read()  # and this process moved back out of it


def test_bench_scale_refuses_a_cpu_count_the_machine_does_not_have() -> None:
    cores = os.cpu_count() or 1
    for bad in ("0", "nan", str(cores + 1)):
        stderr = refused("scale", "--cpus", bad)
        assert f"--cpus must be between 0.1 and this machine's {cores} cores" in stderr


def test_the_table_says_the_run_had_a_cpu_quota() -> None:
    from bench.scale import table

    report = {"nodes": 3, "pods": 30, "deployments": 1, "load_average_before": [1.0],
              "load_average_end": [2.0], "api_mutating_s": {"p99": 0.05},
              "api_read_s": {"p99": 0.01}, "all_pods_running_s": 20.0, "failover_s": 0.7,
              "master_rss_mb_peak": {"m1": 100.0}, "timed_out": False, "failure": None,
              "cpu_quota_cores": 1.6}
    assert "CPU quota 1.6 cores" in table(report).splitlines()[0]
    del report["cpu_quota_cores"]
    assert "quota" not in table(report)
