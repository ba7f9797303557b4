"""partition: the Raft leader is cut off from the other masters, then the network heals.

Purpose: a site's network splits. Each master runs as its own host in a network namespace the
harness creates (joined by a bridge in a hub namespace; this host and the node agents reach
every master through one more link). The leader loses the other masters but not its clients:
the majority elects a new leader and keeps serving (writes are acknowledged, the controllers
act), the old leader steps down and stops its duties within its lease and acknowledges
nothing, and after the heal it rejoins with exactly the majority's state (a write sent to it
while cut off never appears). Needs root (network namespaces, nftables); otherwise skipped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys
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


class PartitionSite(Site):
    """A site whose masters are hosts in their own network namespaces."""

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("kubeconfig"):
            raise ScenarioError("partition builds its own cluster in network namespaces; "
                                "--kubeconfig is not supported")
        super().__init__(**kwargs)
        self.netns: dict[str, str] = {}  # master name -> namespace
        self.hub = f"ep{self.tag}hub"
        self.subnet = self._free_subnet()
        self.addresses: dict[str, str] = {}

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

    async def _start(self) -> None:
        self.say(f"creating network namespaces: {self.masters_wanted} master hosts on "
                 f"{self.subnet}.0/24 behind a bridge")
        await trio.to_thread.run_sync(self._network, self.masters_wanted)
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
        await super().teardown()
        if self.keep:
            return
        for ns in self.netns.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        # Deleting the hub removed the host's veth with its peer; in case it did not:
        subprocess.run(["ip", "link", "del", f"v{self.tag}h"], capture_output=True, timeout=30)


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
