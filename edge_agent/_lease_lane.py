"""The lease lane of a hollow-node runner: a small process renewing the Leases of the runner's
nodes (see edge_agent._hollow_runner for why a process of its own). Started by `LeaseLane` as
`python -m edge_agent._lease_lane`: its config (JSON: names, servers, token, verify,
renew_interval, lease_seconds) comes on stdin, then the Node uids as the runner's agents register
(a renewal carries the Node as owner); stdin's closing ends it; a summary of the renewals
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

from ._agent import LEASE_JITTER
from ._api import ApiError, ApiUnavailable, Backoff, HttpApiSession
from ._hollow_api import HollowApiSession, tls_context
from ._hollow_runner import STATS_INTERVAL, _loop_lag, _pct
from ._node import NodeLease

log = logging.getLogger("edge_agent.hollow")

# How often a node whose Node uid the runner has not sent yet is checked before its first
# renewal (a local check: the runner sends uids as its agents register).
REGISTRATION_POLL = 0.2
class LeaseLog:
    """When the Leases of a runner's nodes were renewed: gaps between renewals, request
    times, and which nodes are silent now."""

    def __init__(self, leases: list[NodeLease]) -> None:
        self.leases = leases
        self._gaps: list[float] = []
        self._durations: list[float] = []
        self.max_gap = 0.0
        self.by_server: dict[str, list[float]] = {}  # renewal times per master
        self.failures = 0

    def renewed(self, took: float, gap: float | None) -> None:
        self._durations.append(took)
        if gap is not None:
            self._gaps.append(gap)
            self.max_gap = max(self.max_gap, gap)

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
    while lease.node_uid is None:  # the runner's agent registers the Node, then says its uid
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
        # A little early at random, as the agent does: nodes started together spread.
        await trio.sleep(lease.renew_interval * random.uniform(1 - LEASE_JITTER, 1))


async def main_async() -> None:
    """Read the config from stdin, renew until stdin closes. Every later stdin line is a JSON
    object {node name: Node uid} for Nodes the runner's agents (re-)registered."""
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    while b"\n" not in buffer:
        chunk = await stdin.receive_some()
        if not chunk:
            return
        buffer += chunk
    raw, buffer = buffer.split(b"\n", 1)
    config = json.loads(raw)
    leases = [NodeLease(name, int(config["lease_seconds"]), float(config["renew_interval"]))
              for name in config["names"]]
    by_name = {lease.name: lease for lease in leases}

    def take_uids(data: bytes) -> None:
        for line in data.split(b"\n"):
            if line.strip():
                for name, uid in json.loads(line).items():
                    if name in by_name:
                        by_name[name].node_uid = uid
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

    context = tls_context(config["verify"])  # one TLS context for all
    # A session per node, as each node's heartbeat has its own connection to its master.
    sessions = [HollowApiSession(config["servers"], config["token"], context=context)
                for _ in leases]
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_loop_lag, lag)
            nursery.start_soon(report)
            for lease, session in zip(leases, sessions, strict=True):
                nursery.start_soon(keep_renewing, lease, session, lease_log)
            while True:
                # Lines may have come with the config (a runner whose nodes register fast).
                complete, _, buffer = buffer.rpartition(b"\n")
                take_uids(complete)
                chunk = await stdin.receive_some()
                if not chunk:  # the runner is gone
                    break
                buffer += chunk
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            for session in sessions:
                await session.aclose()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s lease-lane %(name)s %(levelname)s %(message)s")
    trio.run(main_async)
