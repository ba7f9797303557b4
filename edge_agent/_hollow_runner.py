"""Many SIMULATED nodes in one process, for scale tests (Kubernetes' kubemark "hollow nodes").

Each hollow node is a real `EdgeAgent` with the simulated `HollowRuntime`: it registers its Node,
watches its pods and reports them Running through the real API, as a node agent does. The nodes
of one process share what a process can share without changing what each node does: one TLS
context, one event loop. Each node talks to the API through its own `HollowApiSession`
(edge_agent._hollow_api: the agent's API calls over a lean HTTP/1.1 transport, a fifth of
httpx's CPU per request), with its own connections.

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

from ._agent import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_NODE_STATUS_INTERVAL,
    AgentConfig,
    EdgeAgent,
)
from ._hollow_api import HollowApiSession, SharedParts, tls_context

log = logging.getLogger("edge_agent.hollow")

# Hollow containers only change when the agent acts (which wakes a sync of that pod at once),
# so the periodic sync of every pod is only a safety net: the kubelet's syncFrequency
# default, 1 min. (Each full round syncs every pod of the node: at 10 s, 1,000 nodes running
# 30 pods each made 3,000 pod syncs per second, the runners' main load once pods existed.)
HOLLOW_RESYNC_INTERVAL = 60.0
# Hollow (simulated) nodes run by the hundred in scale tests, whose clusters use a longer grace
# period: 5 s keeps 1,000 nodes at 200 lease writes/s instead of 500.
HOLLOW_LEASE_RENEW = 5.0
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
                           lease_seconds: int = DEFAULT_LEASE_SECONDS,
                           node_status_interval: float = DEFAULT_NODE_STATUS_INTERVAL,
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
    loop's wake-up lag. `lease_renew`/`lease_seconds` set each node's Lease (the masters' node
    grace period must be longer than the renew interval), `node_status_interval` how often a
    node whose status did not change still writes it (the kubelet's
    nodeStatusReportFrequency)."""
    if count < 1:
        raise ValueError("count must be >= 1")
    context = tls_context(verify)  # one TLS context for every node of the process
    shared = SharedParts()  # and one copy of what their pods have alike
    agents: list[EdgeAgent] = []
    sessions: list[HollowApiSession] = []
    names = [f"{name_prefix}-{i:04d}" for i in range(first_index, first_index + count)]
    lane = LeaseLane(names, servers=servers, token=token, verify=verify,
                     renew_interval=lease_renew,
                     lease_seconds=lease_seconds)
    lag: list[float] = []

    async def report() -> None:
        while True:
            await trio.sleep(STATS_INTERVAL)
            samples, lag[:] = list(lag), []
            figures = dict(lane.latest)
            figures.update(loop_lag_p99_s=_pct(samples, 99),
                           loop_lag_max_s=round(max(samples), 3) if samples else None,
                           nodes=len(agents), t=time.time(),
                           # Totals: how well the nodes' connections are reused.
                           api_requests=sum(s.requests for s in sessions),
                           api_connects=sum(s.connects for s in sessions),
                           # How the nodes' pod syncs went (echo: a status-only update, the
                           # watch echo of the node's own write, that needed no sync).
                           pod_syncs_inline=sum(a.syncer.inline_syncs for a in agents),
                           pod_syncs_tasks=sum(a.syncer.task_syncs for a in agents),
                           pod_echoes_skipped=sum(a.syncer.echoes_skipped for a in agents))
            if figures.get("silent_now"):
                log.warning("%d hollow nodes' Leases silent past the late threshold (longest "
                            "%.1fs)", figures["silent_now"], figures.get("silent_max_s", 0.0))
            if stats_observer is not None:
                stats_observer(figures)

    async with trio.open_nursery() as nursery:
        await nursery.start(lane.run)
        nursery.start_soon(_send_node_uids, agents, lane)
        for index, name in enumerate(names, start=first_index):
            config = AgentConfig(
                node_name=name, data_dir=str(Path(data_dir) / name),
                address=hollow_address(index), servers=servers, token=token, verify=verify,
                labels=dict(labels or {}),
                runtime="hollow", log_port=None, cpu=cpu, memory=memory,
                max_pods=max_pods, resync_interval=HOLLOW_RESYNC_INTERVAL,
                lease_renew=lease_renew, lease_seconds=lease_seconds,
                node_status_interval=node_status_interval)
            # Each node its own session (its own connections and watch), as its own agent.
            session = HollowApiSession(servers, token, context=context, shared=shared)
            sessions.append(session)
            agent = EdgeAgent(config, session=session)
            # The hollow runtime reports its containers' changes as events: its timed relist
            # (which syncs every pod) keeps the resync cadence above, not Docker's safety net.
            agent.syncer.relist_interval = HOLLOW_RESYNC_INTERVAL
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
