"""Many SIMULATED nodes in one process, for scale tests (Kubernetes' kubemark "hollow nodes").

Each hollow node is a real `EdgeAgent` with the simulated `HollowRuntime`: it registers its Node,
watches its pods and reports them Running through the real API, as a node agent does. The nodes
of one process share what a process can share without changing what each node does: one TLS
context, one event loop.

Their Leases are renewed by a lease lane, a small process of the runner's own
(`edge_agent._lease_lane`). Renewing them in the runner made healthy nodes NotReady under load
(their pods were replaced), while the masters answered a lease PUT from another client in 0.1 s:
with hundreds of nodes the runner's event loop always has a long run queue (watch streams,
status writes, pod syncs) and trio runs it in FIFO batches; a task wakes within one batch, but
an HTTPS request yields to the loop a few dozen times (pool, TLS writes and reads, headers,
body) and waits a whole batch each time. At 200 nodes and 4,000 pods a renewal took 4-25 s
(p50-p99) in the runner with its loop waking sleepers within 0.3-0.9 s. A dedicated thread with
its own loop was not enough on a loaded machine (renewals still took up to 15 s: every step of
the thread waits for the GIL, held by the busy loop). A process of its own uses little CPU, so
the kernel schedules it promptly whenever a renewal is due, and its connections carry nothing
else: renewals never queue behind pod work. The lane logs every late renewal (`NodeLease`) and
reports the renewals' figures, which the runner passes on with its own loop's lag.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from ._agent import AgentConfig, EdgeAgent
from ._api import HttpApiSession, tls_verify

log = logging.getLogger("edge_agent.hollow")

# Hollow nodes only change state when the agent acts, so a slow relist is enough; it keeps
# hundreds of simulated nodes in one process cheap.
HOLLOW_RESYNC_INTERVAL = 10.0
# Hollow (simulated) nodes run by the hundred in scale tests, whose clusters use a longer grace
# period: 5 s keeps 1,000 nodes at 200 lease writes/s instead of 500.
HOLLOW_LEASE_RENEW = 5.0
# Hollow agents per HTTP connection pool. httpcore scans every connection of a pool on each
# request and response (and polls each idle one for readability): with 20 agents per pool that
# scan was a sixth of a busy runner's CPU. A pool per agent holds its watch and a few writes.
HOLLOW_AGENTS_PER_POOL = 1
# Idle connections a node's pool keeps: its watch and its status writes in flight (the agent's
# STATUS_WRITE_CONCURRENCY); more would only be closed again.
HOLLOW_POOL_KEEPALIVE = 6
# How long an idle pooled connection is kept (httpx's default is 5 s): a node's status writes
# come in bursts further apart than that, and each reconnect is a TLS handshake (handshakes
# were a tenth of a busy runner's CPU). The masters keep idle connections 75 s.
KEEPALIVE_EXPIRY = 60.0
# How often the runner looks for agents that registered their Node (to tell the lease lane).
UID_POLL = 0.2
# How often a runner's figures (lease renewals, event-loop lag) are summarised.
STATS_INTERVAL = 5.0
# Event-loop lag probe period: short enough to catch a busy loop, negligible cost.
LOOP_PROBE_INTERVAL = 0.25


def _pct(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1)], 3)


def hollow_address(index: int) -> str:
    """Address of hollow node `index` (0-based): 127.2.x.y, never bound (nothing listens)."""
    return f"127.2.{index // 250}.{index % 250 + 1}"


class LeaseLane:
    """The lease lane of a runner: `python -m edge_agent._lease_lane`, a process renewing the
    Leases of the runner's nodes with its own event loop and connection pool (see the module
    docstring for why). `send_uids` tells it the Node uids of registered agents (the Lease's
    owner); it renews as the agent's heartbeat would and prints a summary of the renewals every
    few seconds, which `latest` holds. It exits when its stdin closes: it never outlives the
    runner."""

    def __init__(self, names: list[str], *, servers: list[str], token: str | None,
                 verify: bool | str, renew_interval: float, lease_seconds: int) -> None:
        self.config = {"names": names, "servers": servers, "token": token, "verify": verify,
                       "renew_interval": renew_interval, "lease_seconds": lease_seconds}
        self.latest: dict[str, Any] = {}
        self._stdin: trio.abc.SendStream | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Run the lane until cancelled; RuntimeError if it exits by itself."""
        async with trio.open_nursery() as nursery:
            proc: trio.Process = await nursery.start(functools.partial(
                trio.run_process, [sys.executable, "-m", "edge_agent._lease_lane"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, check=False))
            assert proc.stdin is not None and proc.stdout is not None
            # The token goes through the pipe, not argv, which any local user can read.
            await proc.stdin.send_all(json.dumps(self.config).encode() + b"\n")
            self._stdin = proc.stdin
            task_status.started()
            buffer = b""
            async for chunk in proc.stdout:
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    try:
                        self.latest = json.loads(line)
                    except ValueError:
                        log.warning("lease lane: %r", line[:200])
            await proc.wait()
            raise RuntimeError(f"the lease lane exited (code {proc.returncode})")

    async def send_uids(self, uids: dict[str, str]) -> None:
        assert self._stdin is not None, "the lane is not running"
        await self._stdin.send_all(json.dumps(uids).encode() + b"\n")


async def _send_node_uids(agents: list[EdgeAgent], lane: LeaseLane) -> None:
    """Tell the lane each Node's uid once its agent registered it, and again if it changes
    (the Node was deleted and registered anew): a local check, no API call."""
    sent: dict[str, str] = {}
    while True:
        fresh: dict[str, str] = {}
        for agent in agents:  # the list grows while agents start
            uid = agent.lease.node_uid
            if uid and sent.get(agent.config.node_name) != uid:
                fresh[agent.config.node_name] = uid
        if fresh:
            await lane.send_uids(fresh)
            sent.update(fresh)
        await trio.sleep(UID_POLL)


async def _loop_lag(samples: list[float]) -> None:
    """How late this event loop wakes a sleeping task: the wait any ready task has."""
    while True:
        t0 = time.monotonic()
        await trio.sleep(LOOP_PROBE_INTERVAL)
        samples.append(time.monotonic() - t0 - LOOP_PROBE_INTERVAL)


async def run_hollow_nodes(count: int, *, servers: list[str], token: str | None,
                           data_dir: str, verify: bool | str = True, name_prefix: str = "hollow",
                           labels: dict[str, str] | None = None, cpu: str = "4",
                           memory: str = "8Gi", max_pods: int = 110, first_index: int = 0,
                           event_observer: Callable[[str, str, dict[str, Any]], None] | None = None,
                           lease_renew: float = HOLLOW_LEASE_RENEW,
                           stats_observer: Callable[[dict[str, Any]], None] | None = None,
                           task_status: trio.TaskStatus[list[EdgeAgent]] = trio.TASK_STATUS_IGNORED
                           ) -> None:
    """Run `count` SIMULATED nodes (HollowRuntime: no containers) in this process, for scale
    tests: each registers its Node, renews its Lease (through the runner's lease lane), watches
    its pods and reports them Running. Never returns unless cancelled; raises RuntimeError if
    the lease lane dies. Started with the agents. Nodes are numbered from `first_index`
    (several runner processes side by side); `event_observer(node name, event type, pod)` sees
    every pod watch event; `stats_observer(figures)` gets, every STATS_INTERVAL seconds, the
    lane's summary of lease renewals (`edge_agent._lease_lane.LeaseLog.summary`) and this
    loop's wake-up lag."""
    import httpx

    if count < 1:
        raise ValueError("count must be >= 1")
    ssl_verify = tls_verify(verify)  # one TLS context for every pool of the process
    clients: list[httpx.AsyncClient] = []
    agents: list[EdgeAgent] = []
    names = [f"{name_prefix}-{i:04d}" for i in range(first_index, first_index + count)]
    lane = LeaseLane(names, servers=servers, token=token, verify=verify,
                     renew_interval=lease_renew,
                     lease_seconds=AgentConfig(names[0], data_dir).lease_seconds)
    lag: list[float] = []

    async def report() -> None:
        while True:
            await trio.sleep(STATS_INTERVAL)
            samples, lag[:] = list(lag), []
            figures = dict(lane.latest)
            figures.update(loop_lag_p99_s=_pct(samples, 99),
                           loop_lag_max_s=round(max(samples), 3) if samples else None,
                           nodes=len(agents), t=time.time())
            if figures.get("silent_now"):
                log.warning("%d hollow nodes' Leases silent past the late threshold (longest "
                            "%.1fs)", figures["silent_now"], figures.get("silent_max_s", 0.0))
            if stats_observer is not None:
                stats_observer(figures)

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(lane.run)
            nursery.start_soon(_send_node_uids, agents, lane)
            for index, name in enumerate(names, start=first_index):
                if (index - first_index) % HOLLOW_AGENTS_PER_POOL == 0:
                    clients.append(httpx.AsyncClient(
                        verify=ssl_verify, trust_env=False,
                        limits=httpx.Limits(max_connections=None,
                                            max_keepalive_connections=HOLLOW_POOL_KEEPALIVE,
                                            keepalive_expiry=KEEPALIVE_EXPIRY)))
                config = AgentConfig(
                    node_name=name, data_dir=str(Path(data_dir) / name),
                    address=hollow_address(index), servers=servers, token=token, verify=verify,
                    labels=dict(labels or {}),
                    runtime="hollow", log_port=None, cpu=cpu, memory=memory,
                    max_pods=max_pods, resync_interval=HOLLOW_RESYNC_INTERVAL,
                    lease_renew=lease_renew)
                session = HttpApiSession(servers, token, verify=verify, client=clients[-1])
                agent = EdgeAgent(config, session=session)
                agent.cache.persist = False  # hundreds of nodes' pod files: nothing to recover
                agent.lease_renewed_elsewhere = True  # the lane does
                if event_observer is not None:
                    agent.event_observer = (
                        lambda etype, obj, _name=name: event_observer(_name, etype, obj))
                await nursery.start(agent.serve)
                agents.append(agent)
            nursery.start_soon(_loop_lag, lag)
            nursery.start_soon(report)
            task_status.started(agents)
    finally:
        with trio.CancelScope(shield=True):
            for client in clients:
                await client.aclose()
