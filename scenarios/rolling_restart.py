"""rolling-restart: restart each master in turn (an upgrade) while clients use the site.

Purpose: the operator's routine. One master is down at a time, so the API is unavailable for
at most one election at a time (only when the leader is the one restarting), no acknowledged
write is lost, and the data plane never notices: zero failed requests through the VIP.
"""

from __future__ import annotations

import sys

import trio

from ._harness import load
from ._runner import Param, Run, Scenario


async def body(run: Run) -> None:
    site, report = run.site, run.report
    await site.deploy()
    leader, _ = await site.wait_leader(duties=True)
    order = site.master_names()
    # The leader last: followers first is what an operator does, and the last restart then
    # costs exactly one election.
    order.sort(key=lambda name: name == leader)
    run.step(f"restart order {', '.join(order)} (leader {leader}); starting traffic and writes")
    per_master: list[tuple[str, bool, float, float | None]] = []
    elections = 0
    async with load(site) as (traffic, writer):
        await trio.sleep(run["warmup"])
        for name in order:
            current = await site.leader()
            was_leader = current is not None and current[0] == name
            t0 = trio.current_time()
            await site.stop(name)
            election: float | None = None
            if was_leader:
                others = [m for m in site.master_names() if m != name]
                await site.wait_leader(others, exclude=name, timeout=run["timeout"])
                election = trio.current_time() - t0
                elections += 1
            site.restart(name)
            await site.wait_caught_up(name, timeout=run["timeout"])
            took = trio.current_time() - t0
            per_master.append((name, was_leader, took, election))
            run.step(f"{name} restarted and caught up in {took:.2f}s"
                     + (f" (was leader; new leader after {election:.2f}s)" if election else ""))
            await trio.sleep(run["pause"])
        await trio.sleep(run["observe"])
    lost = await writer.lost()
    gap = writer.longest_gap()
    for name, was_leader, took, election in per_master:
        report.figure(f"restart_{name}_s", took, "s",
                      f"{name} down until caught up" + (" (leader)" if was_leader else ""))
        if election is not None:
            report.figure(f"election_after_{name}_s", election, "s", f"new leader after {name} stopped")
    report.figure("elections", elections, "", "elections caused")
    report.figure("api_writes", writer.total, "", "API writes attempted")
    report.figure("api_writes_failed", len(writer.failed), "", "API writes failed")
    report.figure("api_longest_unavailable_s", gap, "s", "longest time without an acknowledged write")
    report.figure("acked_writes_lost", len(lost), "", "acknowledged writes lost")
    report.figure("vip_requests", traffic.total, "", "VIP requests")
    report.figure("vip_requests_failed", len(traffic.failures), "", "VIP requests failed")
    report.check("no failed VIP requests", not traffic.failures,
                 f"{len(traffic.failures)} of {traffic.total} failed"
                 + (f" (first: {traffic.failures[0][1]})" if traffic.failures else ""))
    report.check("at most one election per restart", elections <= 1,
                 f"{elections} election(s) for {len(per_master)} restarts")
    report.check("API unavailable at most one election at a time", gap <= run["max_unavailable"],
                 f"longest gap between acknowledged writes {gap:.2f}s "
                 f"(limit {run['max_unavailable']}s)")
    report.check("no acknowledged write lost", not lost, f"{len(lost)} of {len(writer.acked)} missing")


SCENARIO = Scenario(
    name="rolling-restart",
    summary="restart each master in turn under load: zero failed VIP requests, API unavailable "
            "at most one election at a time, no acknowledged write lost.",
    body=body,
    params=[
        Param("warmup", 3.0, 1.0, "Seconds of traffic before the first restart."),
        Param("pause", 3.0, 1.0, "Seconds between one master caught up and the next restart."),
        Param("observe", 3.0, 1.0, "Seconds of traffic after the last restart."),
        Param("max_unavailable", 5.0, 5.0, "Longest acceptable time without an acknowledged "
              "write (one election plus the client's retry)."),
        Param("timeout", 60.0, 45.0, "Seconds to wait for each step before failing."),
    ],
)

if __name__ == "__main__":
    sys.exit(SCENARIO.main())
