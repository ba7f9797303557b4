"""What the benchmarks read from /proc (CPU time of one process and of the whole machine), and
how they stop the process groups they started."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU-seconds of one process so far (raises OSError when it is gone)."""
    with open(f"/proc/{pid}/stat") as f:
        # Split after the command name, which may itself hold spaces and parentheses.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, idle) CPU-seconds of every core together since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    idle = ticks[3] + ticks[4]  # idle + iowait are not work
    # user nice system idle iowait irq softirq steal; guest time is already in user/nice.
    return (sum(ticks[:8]) - idle) / hz, idle / hz


def stop_process_groups(procs: list[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    """SIGTERM the process group of each process (each was started in a session of its own),
    then SIGKILL any still running after ``grace`` seconds."""
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def keep_dir_problem(path: str | None) -> str | None:
    """Why ``--keep-dir path`` cannot be used, or None. A run there would start its masters on
    an earlier run's data (its objects already exist, its journal replays): the directory must
    be new or empty."""
    if path is None:
        return None
    where = pathlib.Path(path)
    if where.exists() and not where.is_dir():
        return f"--keep-dir {path}: exists and is not a directory"
    if where.is_dir() and any(where.iterdir()):
        return (f"--keep-dir {path} is not empty: a run there would start on an earlier run's "
                "data; name a new or empty directory")
    return None
