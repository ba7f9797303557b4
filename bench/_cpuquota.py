"""A benchmark on a smaller machine than this one: a CPU quota for the benchmark's process and
everything it starts (``--cpus 1.6`` on a 2-core box is a box 20 % slower), through the kernel's
cgroup CPU controller (cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us``). Needs root.

Over each 100 ms period the group may use ``cpus`` x 100 ms of CPU, then waits for the next
period: the cores are as fast as before but there is less of them to go round, which is how a
slower or busier machine looks to a saturated cluster. The machine's idle time then includes
the time the group waited for its quota."""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Iterator

PERIOD_US = 100_000
_V2_ROOT = pathlib.Path("/sys/fs/cgroup")
_V1_CPU_ROOTS = (pathlib.Path("/sys/fs/cgroup/cpu"), pathlib.Path("/sys/fs/cgroup/cpu,cpuacct"))


class QuotaError(Exception):
    """No CPU quota can be set here (not root, no cgroup CPU controller)."""


def _own_group_v1(root: pathlib.Path) -> pathlib.Path:
    """This process's group in the v1 hierarchy mounted at ``root`` (from /proc/self/cgroup)."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if "cpu" in controllers.split(","):
                return root / path.lstrip("/")
    return root


def _own_group_v2() -> pathlib.Path:
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return _V2_ROOT / line.rstrip("\n")[3:].lstrip("/")
    return _V2_ROOT


def check_cpus(cpus: float) -> str | None:
    """Why ``--cpus cpus`` cannot be used on this machine, or None."""
    cores = os.cpu_count() or 1
    if not 0.1 <= cpus <= cores:  # (also refuses nan)
        return f"--cpus must be between 0.1 and this machine's {cores} cores, got {cpus}"
    if os.geteuid() != 0:
        return "--cpus needs root (it puts the benchmark in a cgroup with a CPU quota)"
    return None


@contextlib.contextmanager
def cpu_quota(cpus: float) -> Iterator[pathlib.Path]:
    """Run the body, and every process it starts, with ``cpus`` cores' worth of CPU time; the
    group is removed afterwards (its processes must have ended; this one moves back)."""
    quota = str(round(cpus * PERIOD_US))
    if (_V2_ROOT / "cgroup.controllers").exists():
        parent = _own_group_v2()
        if "cpu" not in (parent / "cgroup.subtree_control").read_text().split():
            raise QuotaError(f"the cgroup CPU controller is not enabled under {parent}")
        files = {"cpu.max": f"{quota} {PERIOD_US}"}
    else:
        root = next((r for r in _V1_CPU_ROOTS if (r / "cpu.cfs_quota_us").exists()), None)
        if root is None:
            raise QuotaError("no cgroup CPU controller is mounted (cgroup v2 or v1 'cpu')")
        parent = _own_group_v1(root)
        files = {"cpu.cfs_period_us": str(PERIOD_US), "cpu.cfs_quota_us": quota}
    group = parent / f"edgeplane-bench-{os.getpid()}"
    try:
        group.mkdir()
        for name, value in files.items():
            (group / name).write_text(value)
        (group / "cgroup.procs").write_text(str(os.getpid()))
    except OSError as exc:
        with contextlib.suppress(OSError):
            group.rmdir()
        raise QuotaError(f"cannot set a CPU quota in {group}: {exc}") from exc
    try:
        yield group
    finally:
        (parent / "cgroup.procs").write_text(str(os.getpid()))
        with contextlib.suppress(OSError):  # a process it started still running keeps it
            group.rmdir()
