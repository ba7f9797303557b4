"""partition: the Raft leader is cut off from the other masters, then the network heals.

Purpose: a site's network splits. Each master runs as its own host in a network namespace the
harness creates (joined by a bridge in a hub namespace; this host and the node agents reach
every master through one more link). The leader loses the other masters but not its clients:
the majority elects a new leader and keeps serving (writes are acknowledged, the controllers
act), the old leader steps down and stops its duties within its lease and acknowledges
nothing, and after the heal it rejoins with exactly the majority's state (a write sent to it
while cut off never appears). Needs root (network namespaces, nftables); otherwise skipped.

A run killed before its teardown leaves its namespaces and host veth behind: each run first
removes those of earlier runs that no live run owns and no process uses (remove_stale_networks).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import trio

from cli._local import LocalCluster, ProcessRecord
from controlplane._allocators import LOCAL_SERVICE_CIDR
from controlplane._master_tls import new_ca, write_ca
from controlplane.client import ApiClient, ApiError, ClusterUnreachable
from controlplane.kubeconfig import load_kubeconfig, write_kubeconfig
from controlplane.master import new_secret, new_token, write_private

from ._harness import SCENARIO_LABEL, ScenarioError, Site, load, wait_until
from ._runner import Param, Run, Scenario

# Masters' ports inside their namespaces (every master has its own address, so all share them).
RAFT_PORT = 7001
API_PORT = 6443
# The nftables table that cuts a master off (inside that master's namespace only).
CUT_TABLE = "edgeplane_partition"
# How long the harness waits for the cut-off master to answer a write: longer than the store's
# 5 s operation timeout, so the answer it gives (not our impatience) is what gets reported.
STRAY_WAIT_S = 8.0
# A run holds ``<tag>.lock`` here (flock) from before it creates its namespaces until it has
# removed them; the kernel drops the lock when the run ends however it ends (SIGKILL too), so a
# namespace whose tag's lock is free was left by a run that is gone. tmpfs: cleared at boot, as
# the namespaces are.
LOCK_DIR = pathlib.Path("/run/edgeplane-partition")
# What this scenario names (the tag is Site's ``s`` + 4 hex digits, unique per run): namespaces
# ep<tag>hub and ep<tag>m<i>; links in this host's namespace v<tag>h and, until they are moved
# into the hub, the peers p<tag>h and p<tag>m<i>.
_NETNS_NAME = re.compile(r"ep(s[0-9a-f]{4})(?:hub|m[0-9]+)")
_LINK_NAME = re.compile(r"[vp](s[0-9a-f]{4})(?:h|m[0-9]+)")
# How long teardown waits for the stopped masters to leave their namespaces before deleting
# them: stop_local_cluster has already waited for them to exit, so this is only a margin.
_EMPTY_WAIT_S = 5.0


def _ip(*args: str, ns: str | None = None) -> None:
    argv = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise ScenarioError(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")


def precondition() -> str | None:
    if os.geteuid() != 0:
        return ("needs root: the masters run as separate hosts in network namespaces this "
                "scenario creates (ip netns) and the partition is an nftables rule inside one; "
                "run it as root (e.g. sudo) to include it")
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        return f"needs {' and '.join(missing)} (apt-get install iproute2 nftables)"
    return None


@dataclasses.dataclass
class RunNetwork:
    """The namespaces and host links one run (one tag) made."""

    namespaces: list[str] = dataclasses.field(default_factory=list)
    links: list[str] = dataclasses.field(default_factory=list)


def networks_by_tag(namespaces: Iterable[str], links: Iterable[str]) -> dict[str, RunNetwork]:
    """This scenario's namespaces and host links among those listed, grouped by run tag;
    anything it does not name is ignored."""
    found: dict[str, RunNetwork] = {}
    for name in namespaces:
        if m := _NETNS_NAME.fullmatch(name):
            found.setdefault(m.group(1), RunNetwork()).namespaces.append(name)
    for name in links:
        if m := _LINK_NAME.fullmatch(name):
            found.setdefault(m.group(1), RunNetwork()).links.append(name)
    return found


def stale_tags(found: Mapping[str, RunNetwork], *, owned: Collection[str],
               occupied: Collection[str]) -> list[str]:
    """The runs whose network may be removed: no live run holds the tag (``owned``: tags whose
    lock is held) and no process is inside any of its namespaces (``occupied``), so a running
    run is never touched, nor a --keep cluster or masters that outlived a killed run (their
    hub goes with them: it is what joins them)."""
    return sorted(tag for tag, net in found.items()
                  if tag not in owned and not any(ns in occupied for ns in net.namespaces))


class TagLock:
    """The lock that says run ``tag`` is alive (see LOCK_DIR)."""

    def __init__(self, tag: str, directory: pathlib.Path = LOCK_DIR) -> None:
        self.path = directory / f"{tag}.lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self, directory: str = "") -> bool:
        """Take the lock if no live process holds it; False if one does. ``directory``: the
        run's cluster directory, recorded for whoever finds its leftovers."""
        self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        if directory:
            os.ftruncate(fd, 0)
            os.write(fd, directory.encode())
        return True

    def recorded_directory(self) -> str:
        """The directory the lock's last holder recorded ("" if none)."""
        try:
            return self.path.read_text().strip()
        except OSError:
            return ""

    def release(self, *, remove: bool) -> None:
        """Let go; ``remove``: delete the file too (while still holding it, so a run that
        opens it meanwhile cannot believe it holds a lock that is being deleted)."""
        if self._fd is None:
            return
        if remove:
            with contextlib.suppress(OSError):
                self.path.unlink()
        os.close(self._fd)
        self._fd = None


def _ip_json(*args: str) -> list[dict[str, Any]]:
    done = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise ScenarioError(f"`ip -j {' '.join(args)}` failed: {done.stderr.strip()}")
    return json.loads(done.stdout or "[]")  # (no namespaces: some versions print nothing)


def _listed_networks() -> dict[str, RunNetwork]:
    return networks_by_tag((n["name"] for n in _ip_json("netns", "list")),
                           (link["ifname"] for link in _ip_json("link", "show")))


def _has_processes(ns: str) -> bool:
    done = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        # A namespace that vanished meanwhile has none; any other error: assume it is in use.
        return "No such file" not in done.stderr
    return bool(done.stdout.split())


def _remove(net: RunNetwork) -> list[str]:
    """Delete the namespaces (hub last), then any host link left; returns what failed."""
    failed = []
    for ns in sorted(net.namespaces, key=lambda name: name.endswith("hub")):
        done = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True, timeout=30)
        if done.returncode != 0 and "No such file" not in done.stderr:
            failed.append(f"namespace {ns}: {done.stderr.strip()}")
    for link in net.links:  # deleting one end of a veth deletes its peer: some are gone already
        done = subprocess.run(["ip", "link", "del", link], capture_output=True, text=True, timeout=30)
        if done.returncode != 0 and "Cannot find device" not in done.stderr:
            failed.append(f"link {link}: {done.stderr.strip()}")
    return failed


def remove_stale_networks() -> list[str]:
    """Remove what earlier partition runs left behind (a run killed before its teardown: its
    namespaces and host veths), by the rule of :func:`stale_tags`; returns one line per run
    removed or kept."""
    # Listed before the locks are tried: a run creates its network only once it holds its lock,
    # so anything listed here either has a held lock or belongs to a run that is gone.
    found = _listed_networks()
    locks: dict[str, TagLock] = {}
    owned = set()
    for tag in found:
        lock = TagLock(tag)
        if lock.try_acquire():
            locks[tag] = lock  # held until its network is gone: no new run can claim the tag
        else:
            owned.add(tag)
    removed: set[str] = set()
    notes = []
    try:
        occupied = {ns for tag in locks for ns in found[tag].namespaces if _has_processes(ns)}
        stale = stale_tags(found, owned=owned, occupied=occupied)
        for tag in stale:
            failed = _remove(found[tag])
            if failed:
                notes.append(f"could not remove what run {tag} left: {'; '.join(failed)}")
            else:
                removed.add(tag)
                names = ", ".join(found[tag].namespaces + found[tag].links)
                notes.append(f"removed what a finished partition run left: {names}")
        for tag in sorted(set(locks) - set(stale)):
            busy = sorted(ns for ns in found[tag].namespaces if ns in occupied)
            directory = locks[tag].recorded_directory()
            stop = f"`edgectl down --dir {directory}`" if directory else "`ip netns pids NAME`"
            notes.append(f"left {', '.join(found[tag].namespaces)}: no run owns them, but processes "
                         f"run in {', '.join(busy)} (a --keep cluster, or masters that outlived "
                         f"their run; stop them: {stop})")
    finally:
        for tag, lock in locks.items():
            lock.release(remove=tag in removed)
    return notes


class PartitionSite(Site):
    """A site whose masters are hosts in their own network namespaces."""

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("kubeconfig"):
            raise ScenarioError("partition builds its own cluster in network namespaces; "
                                "--kubeconfig is not supported")
        super().__init__(**kwargs)
        self.netns: dict[str, str] = {}  # master name -> namespace
        self.hub = f"ep{self.tag}hub"
        self.subnet = ""  # picked once stale networks (and their routes) are removed
        self.addresses: dict[str, str] = {}
        self._lock = TagLock(self.tag)

    @staticmethod
    def _free_subnet() -> str:
        routes = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True).stdout
        for third in range(40, 250):
            prefix = f"10.213.{third}"
            if f"{prefix}." not in routes:
                return prefix
        raise ScenarioError("no free 10.213.X.0/24 subnet for the masters' network")

    def _network(self, masters: int) -> None:
        _ip("ip", "netns", "add", self.hub)
        self.netns["hub"] = self.hub
        _ip("ip", "link", "add", "br0", "type", "bridge", ns=self.hub)
        _ip("ip", "link", "set", "br0", "up", ns=self.hub)
        _ip("ip", "link", "set", "lo", "up", ns=self.hub)
        # This host's link to the masters' network (the harness, node agents and netproxy use it).
        host_if, hub_if = f"v{self.tag}h", f"p{self.tag}h"
        _ip("ip", "link", "add", host_if, "type", "veth", "peer", "name", hub_if)
        _ip("ip", "link", "set", hub_if, "netns", self.hub)
        _ip("ip", "link", "set", hub_if, "master", "br0", "up", ns=self.hub)
        _ip("ip", "addr", "add", f"{self.subnet}.254/24", "dev", host_if)
        _ip("ip", "link", "set", host_if, "up")
        for i in range(1, masters + 1):
            name, ns = f"m{i}", f"ep{self.tag}m{i}"
            _ip("ip", "netns", "add", ns)
            self.netns[name] = ns
            peer = f"p{self.tag}m{i}"
            _ip("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", peer)
            _ip("ip", "link", "set", peer, "netns", self.hub)
            _ip("ip", "link", "set", peer, "master", "br0", "up", ns=self.hub)
            _ip("ip", "link", "set", "lo", "up", ns=ns)
            _ip("ip", "addr", "add", f"{self.subnet}.{i}/24", "dev", "eth0", ns=ns)
            _ip("ip", "link", "set", "eth0", "up", ns=ns)
            self.addresses[name] = f"{self.subnet}.{i}"

    def _claim_network(self) -> None:
        for note in remove_stale_networks():
            self.say(note)
        if not self._lock.try_acquire(str(self.dir)):
            raise ScenarioError(f"another partition run uses the tag {self.tag}; run again")
        # Choosing a free subnet and routing it (the host's address on it) is one step for
        # every run on this machine: two runs starting together would otherwise pick the same.
        LOCK_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        with open(LOCK_DIR / "subnets.lock", "w") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            self.subnet = self._free_subnet()
            self.say(f"creating network namespaces: {self.masters_wanted} master hosts on "
                     f"{self.subnet}.0/24 behind a bridge")
            self._network(self.masters_wanted)

    async def _start(self) -> None:
        await trio.to_thread.run_sync(self._claim_network)
        root = self.dir
        secret_file, token_file = root / "secret", root / "admin-token"
        ca_cert, ca_key = root / "ca.crt", root / "ca.key"
        token = new_token()
        write_private(secret_file, new_secret())
        write_private(token_file, token)
        ca = new_ca()
        write_ca(ca, ca_cert, ca_key)
        names = list(self.addresses)
        urls = [f"https://{self.addresses[n]}:{API_PORT}" for n in names]
        write_kubeconfig(self.kubeconfig_path, urls, token=token, names=names, ca_data=ca.cert_pem)
        self.cluster = LocalCluster(root)
        for name in names:
            addr = self.addresses[name]
            argv = [sys.executable, "-m", "cli", "master", "start", "--name", name,
                    "--data-dir", str(root / name), "--raft-addr", f"{addr}:{RAFT_PORT}",
                    "--api-addr", f"{addr}:{API_PORT}", "--secret-file", str(secret_file),
                    "--admin-token-file", str(token_file), "--ca-cert-file", str(ca_cert),
                    "--ca-key-file", str(ca_key),
                    # Clients run on this host: VIPs must be loopback addresses, never routed ones.
                    "--service-cidr", LOCAL_SERVICE_CIDR]
            for other in names:
                if other != name:
                    argv += ["--peer", f"{self.addresses[other]}:{RAFT_PORT}"]
            self.spawn("master", name, argv, data_dir=str(root / name),
                       raft_address=f"{addr}:{RAFT_PORT}", api_address=f"https://{addr}:{API_PORT}")
        self.client = ApiClient.from_kubeconfig(str(self.kubeconfig_path), retry_timeout=30.0,
                                                user_agent="edgeplane-scenario")
        await self.wait_leader(timeout=60.0, duties=True)
        self.say(f"masters up in namespaces {', '.join(self.netns[n] for n in names)}")
        for i in range(1, self.nodes_wanted + 1):
            name, address = f"{self.node_prefix}{i}", f"{self.node_net}.{i}"
            argv = [sys.executable, "-m", "cli", "node", "join", "--name", name,
                    "--data-dir", str(root / name), "--address", address,
                    "--token-file", str(token_file), "--ca-cert-file", str(ca_cert)]
            for url in urls:
                argv += ["--server", url]
            self.spawn("node", name, argv, data_dir=str(root / name), address=address,
                       runtime="docker")

        async def registered() -> bool:
            assert self.client is not None
            body = await self.client.list("nodes")
            have = {n["metadata"]["name"] for n in body.get("items", [])}
            return set(self.node_names()) <= have

        await wait_until("the node agents to register", registered, 60.0)

    @trio.lowlevel.enable_ki_protection  # see Site.restart
    def spawn(self, role: str, name: str, argv: list[str], **fields: Any) -> ProcessRecord:
        if role != "master":
            return super().spawn(role, name, argv, **fields)
        # `ip netns exec` execs the master in place: the recorded pid and command line are the
        # master's own (what `edgectl down` and the restart logic check).
        log = self.dir / f"{name}.log"
        pid = self._spawn(["ip", "netns", "exec", self.netns[name], *argv], log)
        record = ProcessRecord(role, name, pid, str(log), argv, fields.pop("data_dir", ""), **fields)
        self.add_process(record)
        return record

    @trio.lowlevel.enable_ki_protection  # see Site.restart
    def restart(self, name: str) -> ProcessRecord:
        record = self.record(name)
        if record.role != "master":
            return super().restart(name)
        record.pid = self._spawn(["ip", "netns", "exec", self.netns[name], *record.argv],
                                 pathlib.Path(record.log))
        assert self.cluster is not None
        self.cluster.save()
        return record

    def cut(self, name: str) -> None:
        """Drop every packet between master ``name`` and the other masters (clients still reach it)."""
        others = ", ".join(a for n, a in self.addresses.items() if n != name)
        rules = (f"table inet {CUT_TABLE} {{\n"
                 f"  chain input {{ type filter hook input priority -10; ip saddr {{ {others} }} drop; }}\n"
                 f"  chain output {{ type filter hook output priority -10; ip daddr {{ {others} }} drop; }}\n"
                 "}\n")
        done = subprocess.run(["ip", "netns", "exec", self.netns[name], "nft", "-f", "-"],
                              input=rules, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise ScenarioError(f"nft in {self.netns[name]} failed: {done.stderr.strip()}")

    def heal(self, name: str) -> None:
        _ip("nft", "delete", "table", "inet", CUT_TABLE, ns=self.netns[name])

    async def teardown(self) -> None:
        try:
            await super().teardown()
        finally:
            if self.keep:  # the cluster stays: so does its network (the lock goes with us)
                self._lock.release(remove=False)
            else:
                for note in await trio.to_thread.run_sync(self._remove_network):
                    self.say(note)

    def _remove_network(self) -> list[str]:
        """Remove this run's namespaces and host links, found by its tag (also what a set-up
        that failed half-way made); never raises. A namespace a process still runs in is left
        (deleting its name would hide the process, not stop it), and the lock with it, so that
        the next run's clean-up finds it."""
        if not self._lock.held:  # set-up stopped before it made anything (or the tag is taken)
            return []
        notes = []
        try:
            listed = _listed_networks().get(self.tag, RunNetwork())
        except (ScenarioError, OSError, ValueError, subprocess.SubprocessError) as exc:
            listed = RunNetwork()
            notes.append(f"could not list namespaces ({exc}); removing the ones recorded")
        net = RunNetwork(sorted({*self.netns.values(), *listed.namespaces}),
                         sorted({f"v{self.tag}h", *listed.links}))
        try:
            deadline = time.monotonic() + _EMPTY_WAIT_S
            busy = [ns for ns in net.namespaces if _has_processes(ns)]
            while busy and time.monotonic() < deadline:
                time.sleep(0.1)
                busy = [ns for ns in busy if _has_processes(ns)]
            if busy:
                notes.append(f"left {', '.join(busy)} and {self.hub}: processes still run there "
                             "(`ip netns pids NAME`); a later partition run removes them once "
                             "they are gone")
                net.namespaces = [ns for ns in net.namespaces
                                  if ns not in busy and ns != self.hub]
                net.links = [link for link in net.links if link != f"v{self.tag}h"]
            failed = _remove(net)
        except (OSError, subprocess.SubprocessError) as exc:
            failed = [str(exc)]
        notes += [f"could not remove {what}" for what in failed]
        self._lock.release(remove=not failed and not notes)
        return notes


async def _local_view(site: Site, name: str) -> dict[str, str] | None:
    """ConfigMaps as master ``name``'s own replica holds them (resourceVersion=0: no barrier)."""
    with contextlib.suppress(ApiError, ClusterUnreachable, ScenarioError):
        body = await site._probe_client(site.api_url(name)).request_json(
            "GET", f"/api/v1/namespaces/{site.namespace}/configmaps",
            params={"resourceVersion": "0", "labelSelector": f"{SCENARIO_LABEL}={site.tag}"})
        return {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in body.get("items", [])}
    return None


async def body(run: Run) -> None:
    site, report = run.site, run.report
    assert isinstance(site, PartitionSite)
    await site.deploy()
    old, status = await site.wait_leader(duties=True)
    majority = [m for m in site.master_names() if m != old]
    run.step(f"leader {old} (term {status.get('term')}); starting traffic and writes")
    times: dict[str, float] = {}
    stray = f"{site.tag}-stray"
    stray_acked = False
    async with load(site) as (traffic, writer):
        await trio.sleep(run["warmup"])
        before_pods = {p.name for p in await site.pods()}
        run.step(f"cutting {old} off from {', '.join(majority)}")
        t0 = trio.current_time()
        site.cut(old)
        new, new_status = await site.wait_leader(majority, exclude=old, timeout=run["timeout"])
        times["new_leader"] = trio.current_time() - t0
        run.step(f"majority elected {new} (term {new_status.get('term')}) after {times['new_leader']:.2f}s")

        async def stepped_down() -> bool:
            st = await site.master_status(old)
            return st is not None and not st.get("isLeader") and not (
                st.get("leaderDuties") or {}).get("runningHere")

        await wait_until(f"{old} to step down and stop its duties", stepped_down, run["timeout"], poll=0.05)
        times["stepped_down"] = trio.current_time() - t0
        run.step(f"{old} stepped down, duties stopped, after {times['stepped_down']:.2f}s")
        await site.wait_leader(majority, exclude=old, duties=True, timeout=run["timeout"])
        await site.scale(site.replicas + 1)
        times["scale_acked"] = trio.current_time() - t0
        run.step(f"scale write acknowledged {times['scale_acked']:.2f}s after the cut")

        # Observed through the majority only: a read sent to the cut-off master waits for the
        # store's timeout before the client tries the next one, which would blur the figure.
        config = load_kubeconfig(str(site.kubeconfig_path))
        majority_config = dataclasses.replace(
            config, servers=tuple(site.api_url(m) for m in majority))
        async with ApiClient(majority_config, retry_timeout=5.0) as majority_client:

            async def new_pod() -> bool:
                return bool({p.name for p in await site.pods(majority_client)} - before_pods)

            await wait_until("the majority's controllers to create the new pod", new_pod,
                             run["timeout"], poll=0.05)
        times["controllers"] = trio.current_time() - t0
        run.step(f"majority's controllers acted after {times['controllers']:.2f}s; holding "
                 f"the partition for {run['hold']}s")
        acked_during = len(writer.acked)
        hold_start = trio.current_time()
        hold_end = hold_start + run["hold"]
        # A write sent to the cut-off master: it must not be acknowledged, and never appear.
        cm = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": stray, "labels": {SCENARIO_LABEL: site.tag}}}
        stray_outcome = f"no answer within {STRAY_WAIT_S:.0f}s"
        try:
            with trio.move_on_after(STRAY_WAIT_S + 1):
                async with ApiClient(dataclasses.replace(config, servers=(site.api_url(old),)),
                                     retry_timeout=0.0, read_timeout=STRAY_WAIT_S) as direct:
                    await direct.create("configmaps", cm, namespace=site.namespace)
                stray_acked, stray_outcome = True, "acknowledged"
        except ApiError as exc:
            stray_outcome = f"{exc.code} {exc.reason}"
        except ClusterUnreachable as exc:
            stray_outcome = f"unreachable: {str(exc).splitlines()[0][:80]}"
        run.step(f"a write sent to {old}: {stray_outcome}")
        await trio.sleep(max(0.0, hold_end - trio.current_time()))
        acked_during = len(writer.acked) - acked_during
        held = trio.current_time() - hold_start
        run.step(f"healing: {old} rejoins")
        t1 = trio.current_time()
        site.heal(old)
        await site.wait_caught_up(old, timeout=run["timeout"], max_lag=0)
        times["rejoin"] = trio.current_time() - t1
        run.step(f"{old} caught up {times['rejoin']:.2f}s after the heal")
        await trio.sleep(run["observe"])
    # Writes have stopped: every replica must converge on the same state.
    views: dict[str, dict[str, str] | None] = {}

    async def converged() -> bool:
        for name in site.master_names():
            views[name] = await _local_view(site, name)
        known = [v for v in views.values() if v is not None]
        return len(known) == len(views) and all(v == known[0] for v in known)

    with contextlib.suppress(ScenarioError):
        await wait_until("every replica to hold the same objects", converged, 20.0)
    same = all(v is not None and v == views[new] for v in views.values())
    stray_present = any(v is not None and stray in v for v in views.values())
    lost = await writer.lost()
    final = await site.leader()
    report.figure("time_to_new_leader_s", times["new_leader"], "s", "majority elected a leader after")
    report.figure("time_to_step_down_s", times["stepped_down"], "s", "old leader stepped down after")
    report.figure("scale_write_acked_s", times["scale_acked"], "s", "scale write acknowledged after")
    report.figure("time_to_controllers_act_s", times["controllers"], "s",
                  "majority's controllers acted (new pod) after")
    report.figure("writes_acked_while_partitioned", acked_during, "", "writes acknowledged during the hold")
    report.figure("time_to_rejoin_s", times["rejoin"], "s", "old leader caught up after the heal")
    report.figure("api_writes", writer.total, "", "API writes attempted")
    report.figure("api_writes_failed", len(writer.failed), "", "API writes failed")
    report.figure("api_longest_unavailable_s", writer.longest_gap(), "s",
                  "longest time without an acknowledged write")
    report.figure("acked_writes_lost", len(lost), "", "acknowledged writes lost")
    report.figure("vip_requests", traffic.total, "", "VIP requests")
    report.figure("vip_requests_failed", len(traffic.failures), "", "VIP requests failed")
    report.check("majority elected a new leader", new != old, f"{new} after {times['new_leader']:.2f}s")
    report.check("majority kept serving writes", acked_during > 0,
                 f"{acked_during} writes acknowledged in {held:.1f}s of partition")
    report.check("old leader stepped down and stopped its duties", True,
                 f"{old} after {times['stepped_down']:.2f}s")
    report.figure("stray_write_applied_later", "yes" if stray_present else "no", "",
                  "unacknowledged write to the cut-off master applied later")
    report.figure("stray_write_answer", stray_outcome, "", "answer to a write sent to the cut-off master")
    if stray_present and not stray_acked:
        report.note(f"the write sent to the cut-off master ({stray_outcome}) was applied after the "
                    "heal: the master kept the proposal and it reached the new leader's log. Allowed "
                    "(its client was never told it failed), but a client that gave up must re-read "
                    "before retrying")
    report.check("cut-off leader acknowledged no write", not stray_acked,
                 "its write was acknowledged" if stray_acked else "its write was not acknowledged")
    report.check("no divergent state after the heal", same,
                 f"all {len(views)} replicas hold the same {len(views[new] or {})} objects" if same
                 else "replica views differ: " + ", ".join(
                     f"{n}: {None if v is None else len(v)}" for n, v in views.items()))
    report.check("no acknowledged write lost", not lost, f"{len(lost)} of {len(writer.acked)} missing")
    report.check("one leader after the heal", final is not None,
                 f"leader now {final[0] if final else 'none'}")
    report.check("no failed VIP requests", not traffic.failures,
                 f"{len(traffic.failures)} of {traffic.total} failed")


SCENARIO = Scenario(
    name="partition",
    summary="masters as hosts in network namespaces: cut the leader off from the majority; the "
            "majority elects and serves, the old leader steps down; heal, it rejoins with no "
            "divergent state. Needs root.",
    body=body,
    params=[
        Param("warmup", 3.0, 1.0, "Seconds of traffic before the cut."),
        Param("hold", 10.0, 3.0, "Seconds the partition lasts after the majority recovered."),
        Param("observe", 3.0, 1.0, "Seconds of traffic after the heal."),
        Param("timeout", 60.0, 45.0, "Seconds to wait for each step before failing."),
    ],
    precondition=precondition,
    make_site=PartitionSite,
)

if __name__ == "__main__":
    sys.exit(SCENARIO.main())
