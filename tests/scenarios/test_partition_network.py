"""The partition scenario's clean-up of network namespaces left by earlier runs.

A run killed before its teardown leaves ep<tag>hub, ep<tag>m<i> and its host veth behind; the
next run removes them, but never what a live run (or a --keep cluster's masters) still uses.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scenarios.partition import (
    RunNetwork,
    TagLock,
    networks_by_tag,
    remove_stale_networks,
    stale_tags,
)


def test_leftovers_are_grouped_by_the_run_that_made_them() -> None:
    found = networks_by_tag(
        ["eps1a2bhub", "eps1a2bm1", "eps1a2bm2", "eps00ffm3", "epsXYZWhub", "other", "eps1a2bhubx"],
        ["lo", "eth0", "veth92bec01", "vs1a2bh", "ps00ffm3", "ps00ffh", "docker0", "vs1a2bhost"])
    assert found == {"s1a2b": RunNetwork(["eps1a2bhub", "eps1a2bm1", "eps1a2bm2"], ["vs1a2bh"]),
                     "s00ff": RunNetwork(["eps00ffm3"], ["ps00ffm3", "ps00ffh"])}


def test_only_runs_nobody_owns_or_uses_are_stale() -> None:
    found = {
        "s0001": RunNetwork(["eps0001hub", "eps0001m1"], ["vs0001h"]),  # killed run: nothing inside
        "s0002": RunNetwork(["eps0002hub", "eps0002m1"], ["vs0002h"]),  # live run (its lock held)
        "s0003": RunNetwork(["eps0003hub", "eps0003m1"], []),  # --keep cluster: a master inside
        "s0004": RunNetwork([], ["ps0004m1"]),  # killed while making its first link
    }
    assert stale_tags(found, owned={"s0002"}, occupied={"eps0003m1"}) == ["s0001", "s0004"]
    # A live run's namespaces are kept even before any master runs in them.
    assert "s0002" not in stale_tags(found, owned={"s0002"}, occupied=set())


def test_the_lock_is_free_once_its_run_is_killed(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import pathlib, sys, time\n"
         "from scenarios.partition import TagLock\n"
         f"assert TagLock('s0abc', pathlib.Path({str(tmp_path)!r})).try_acquire()\n"
         "print('held', flush=True)\n"
         "time.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert not TagLock("s0abc", tmp_path).try_acquire()  # its run is alive
    finally:
        holder.send_signal(signal.SIGKILL)  # killed: no teardown, no unlock of its own
        holder.wait(timeout=30)
    lock = TagLock("s0abc", tmp_path)
    assert lock.try_acquire()
    lock.release(remove=True)
    assert not (tmp_path / "s0abc.lock").exists()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=30).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines()}


@pytest.mark.root
def test_a_killed_runs_namespaces_are_removed_and_nothing_in_use() -> None:
    dead, live, kept = (f"s{t:04x}" for t in random.sample(range(16**4), 3))
    for tag in (dead, live, kept):  # the shape _network makes: hub, a master, the host veth
        _ip("netns", "add", f"ep{tag}hub")
        _ip("netns", "add", f"ep{tag}m1")
        _ip("link", "add", f"v{tag}h", "type", "veth", "peer", "name", f"p{tag}h")
        _ip("link", "set", f"p{tag}h", "netns", f"ep{tag}hub")
    _ip("link", "add", f"p{dead}m2", "type", "veth", "peer", "name", f"p{dead}m3")  # half-made
    owner = TagLock(live)
    assert owner.try_acquire()
    gone = TagLock(kept)  # the run that left a cluster behind recorded where it is
    assert gone.try_acquire("/tmp/kept-cluster")
    gone.release(remove=False)
    master = subprocess.Popen(["ip", "netns", "exec", f"ep{kept}m1", "sleep", "120"])
    try:
        deadline = time.monotonic() + 10
        while not subprocess.run(["ip", "netns", "pids", f"ep{kept}m1"], capture_output=True,
                                 text=True, timeout=30).stdout.split():
            assert time.monotonic() < deadline, "the stand-in master never entered its namespace"
            time.sleep(0.02)
        notes = remove_stale_networks()
        left, links = _namespaces(), _links()
        assert not {f"ep{dead}hub", f"ep{dead}m1"} & left
        assert not {f"v{dead}h", f"p{dead}m2", f"p{dead}m3"} & links
        assert {f"ep{live}hub", f"ep{live}m1", f"ep{kept}hub", f"ep{kept}m1"} <= left
        assert {f"v{live}h", f"v{kept}h"} <= links
        assert any(f"ep{dead}hub" in n for n in notes)
        assert any(f"ep{kept}m1" in n and "edgectl down --dir /tmp/kept-cluster" in n for n in notes)
        master.kill()
        master.wait(timeout=30)
        remove_stale_networks()  # the kept cluster's master is gone: now its network goes too
        assert not {f"ep{kept}hub", f"ep{kept}m1"} & _namespaces()
        assert f"ep{live}hub" in _namespaces()
    finally:
        master.kill()
        owner.release(remove=True)
        gone.path.unlink(missing_ok=True)
        for tag in (dead, live, kept):
            for ns in (f"ep{tag}hub", f"ep{tag}m1"):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
            subprocess.run(["ip", "link", "del", f"v{tag}h"], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", f"p{dead}m2"], capture_output=True, timeout=30)
