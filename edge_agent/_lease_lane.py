"""The lease lane of a hollow-node runner: a small process renewing the Leases of the runner's
nodes (see edge_agent._hollow_runner for why a process of its own). Started by `LeaseLane` as
`python -m edge_agent._lease_lane`: its config (JSON: names, servers, token, verify,
renew_interval, lease_seconds) comes on stdin, whose closing ends it; a summary of the renewals
(`LeaseLog.summary`, JSON) goes to stdout every STATS_INTERVAL seconds; late renewals are logged
to stderr by `NodeLease`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import time
from typing import Any

import trio

from ._api import ApiError, ApiUnavailable, Backoff, HttpApiSession, tls_verify
from ._hollow_runner import KEEPALIVE_EXPIRY, STATS_INTERVAL, _loop_lag, _pct
from ._node import NodeLease

log = logging.getLogger("edge_agent.hollow")

# How often a node whose Node is not registered yet is looked up before its first renewal.
REGISTRATION_POLL = 0.5
# Connections each node's pool keeps: one, the node's own, as a kubelet keeps one to its API
# server. A pool per node, not one for all: httpcore matches every queued request against every
# connection of its pool whenever a request starts or ends, which is quadratic in the requests
# in flight -- with one pool for 200 nodes that scan was 70 % of the lane's CPU and renewals
# took 3-50 s, feeding on themselves (slower renewals, more in flight, longer scans).
NODE_KEEPALIVE = 1


class LeaseLog:
    """When the Leases of a runner's nodes were renewed: gaps between renewals, request
    times, and which nodes are silent now."""

    def __init__(self, leases: list[NodeLease]) -> None:
        self.leases = leases
        self._prev: dict[str, float] = {}
        self._gaps: list[float] = []
        self._durations: list[float] = []
        self.max_gap = 0.0
        self.by_server: dict[str, list[float]] = {}  # renewal times per master
        self.failures = 0

    def renewed(self, node: str, started: float, ended: float) -> None:
        prev = self._prev.get(node)
        self._prev[node] = ended
        self._durations.append(ended - started)
        if prev is not None:
            self._gaps.append(ended - prev)
            self.max_gap = max(self.max_gap, ended - prev)

    def failed(self) -> None:
        self.failures += 1

    def summary(self) -> dict[str, Any]:
        """Figures since the previous summary (totals for late renewals and failures)."""
        gaps, self._gaps = self._gaps, []
        durations, self._durations = self._durations, []
        by_server, self.by_server = self.by_server, {}
        silent = [s for s in (lease.silent_for() for lease in self.leases)
                  if self.leases and s > self.leases[0].late_after]
        return {"renewals": len(durations), "gap_p99_s": _pct(gaps, 99),
                "gap_max_s": round(max(gaps), 3) if gaps else None,
                "gap_max_run_s": round(self.max_gap, 3),
                "request_p50_s": _pct(durations, 50), "request_p99_s": _pct(durations, 99),
                "late_total": sum(lease.late_renewals for lease in self.leases),
                "request_p99_s_by_server": {s: _pct(v, 99) for s, v in sorted(by_server.items())},
                "failures_total": self.failures, "silent_now": len(silent),
                "silent_max_s": round(max(silent), 3) if silent else 0.0}


async def keep_renewing(lease: NodeLease, session: HttpApiSession,
                        lease_log: LeaseLog) -> None:
    """One node's renewals, forever: what the agent's heartbeat loop does for its Lease."""
    backoff = Backoff(0.2, lease.renew_interval)
    while lease.node_uid is None:  # the runner's agent registers the Node
        try:
            node = await session.get_node(lease.name)
        except (ApiUnavailable, ApiError) as exc:
            log.info("node %s: %s", lease.name, exc)
            node = None
        if node is not None:
            lease.node_uid = (node.get("metadata") or {}).get("uid")
        else:
            await trio.sleep(REGISTRATION_POLL)
    while True:
        server, started = session.server, time.monotonic()
        try:
            await lease.renew(session)
            lease_log.by_server.setdefault(server, []).append(time.monotonic() - started)
        except (ApiUnavailable, ApiError) as exc:
            lease_log.failed()
            delay = backoff.next()
            log.info("lease of %s: %s; retrying in %.1fs", lease.name, exc, delay)
            await trio.sleep(delay)
            continue
        backoff.reset()
        # Up to 15 % early at random, as the agent does: nodes started together spread.
        await trio.sleep(lease.renew_interval * random.uniform(0.85, 1.0))


async def main_async() -> None:
    """Read the config from stdin, renew until stdin closes."""
    import httpx

    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    raw = b""
    while not raw.endswith(b"\n"):
        chunk = await stdin.receive_some()
        if not chunk:
            return
        raw += chunk
    config = json.loads(raw)
    leases = [NodeLease(name, int(config["lease_seconds"]), float(config["renew_interval"]))
              for name in config["names"]]
    lease_log = LeaseLog(leases)
    for lease in leases:
        lease.on_renewed = lease_log.renewed
    lag: list[float] = []

    async def report() -> None:
        while True:
            await trio.sleep(STATS_INTERVAL)
            figures = lease_log.summary()
            samples, lag[:] = list(lag), []
            figures["lane_lag_max_s"] = round(max(samples), 3) if samples else None
            print(json.dumps(figures), flush=True)

    verify = tls_verify(config["verify"])  # one TLS context for all
    limits = httpx.Limits(max_connections=None, keepalive_expiry=KEEPALIVE_EXPIRY,
                          max_keepalive_connections=NODE_KEEPALIVE)
    clients = [httpx.AsyncClient(verify=verify, trust_env=False, limits=limits) for _ in leases]
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_loop_lag, lag)
            nursery.start_soon(report)
            for lease, client in zip(leases, clients, strict=True):
                session = HttpApiSession(config["servers"], config["token"], client=client)
                nursery.start_soon(keep_renewing, lease, session, lease_log)
            while await stdin.receive_some():  # the runner is gone once its end closes
                pass
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            for client in clients:
                await client.aclose()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s lease-lane %(name)s %(levelname)s %(message)s")
    trio.run(main_async)
