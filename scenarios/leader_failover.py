"""leader-failover: kill -9 (or freeze, --freeze 1) the Raft leader while clients use the site.

Purpose: a master dying without warning costs the site one election. The new leader is elected
and takes over the scheduler and controllers (a Deployment scaled in the gap gets its pod), API
writes fail at most during the election, no acknowledged write is lost, and the pods keep
answering through the Service VIP (the data plane never needs a master).
"""

from __future__ import annotations

import signal
import sys
from typing import Any

import trio

from ._harness import load, wait_until
from ._runner import Param, Run, Scenario


async def body(run: Run) -> None:
    site, report = run.site, run.report
    await site.deploy()
    old, status = await site.wait_leader(duties=True)
    run.step(f"leader is {old} (term {status.get('term')}); starting client traffic and writes")
    async with load(site) as (traffic, writer):
        await trio.sleep(run["warmup"])
        replicas = site.replicas
        before = {p.name for p in await site.pods()}
        freeze = bool(run["freeze"])
        run.step(f"{'SIGSTOP' if freeze else 'kill -9'} {old}")
        t0 = trio.current_time()
        site.signal(old, signal.SIGSTOP if freeze else signal.SIGKILL)
        survivors = [m for m in site.master_names() if m != old]
        scaled = trio.Event()
        times: dict[str, float] = {}

        async def scale_in_gap() -> None:
            # A user's write during the election: the client retries until a leader commits it.
            await site.scale(replicas + 1)
            times["scale_acked"] = trio.current_time() - t0
            scaled.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(scale_in_gap)
            new, new_status = await site.wait_leader(survivors, exclude=old, timeout=run["timeout"])
            times["leader"] = trio.current_time() - t0
            run.step(f"{new} leads (term {new_status.get('term')}) after {times['leader']:.2f}s")
            await site.wait_leader(survivors, exclude=old, duties=True, timeout=run["timeout"])
            times["duties"] = trio.current_time() - t0
            await scaled.wait()

            async def new_pod() -> bool:
                return bool({p.name for p in await site.pods()} - before)

            await wait_until("the ReplicaSet controller to create the new pod", new_pod,
                             run["timeout"], poll=0.05)
            times["controllers"] = trio.current_time() - t0
            run.step(f"controllers acted (new pod) {times['controllers']:.2f}s after the fault")
            await site.wait_ready(replicas + 1, timeout=run["timeout"])
            times["ready"] = trio.current_time() - t0
        run.step(f"observing for {run['observe']}s more")
        await trio.sleep(run["observe"])
        gap_end = t0 + times["leader"]
        run.step(f"{'resuming (SIGCONT)' if freeze else 'restarting'} {old}")
        restart_at = trio.current_time()
        if freeze:
            # It wakes up believing it leads: it must learn the new term and follow.
            site.signal(old, signal.SIGCONT)
        else:
            site.restart(old)
        await site.wait_caught_up(old, timeout=run["timeout"])
        times["rejoin"] = trio.current_time() - restart_at
        await trio.sleep(0.5)
    lost = await writer.lost()
    after = await site.leader()

    report.figure("time_to_new_leader_s", times["leader"], "s", "time to new leader")
    report.figure("time_to_duties_s", times["duties"], "s", "time until the new leader runs the duties")
    report.figure("scale_write_acked_s", times["scale_acked"], "s", "scale write acknowledged after")
    report.figure("time_to_controllers_act_s", times["controllers"], "s",
                  "time until controllers act (new pod)")
    report.figure("time_to_scaled_ready_s", times["ready"], "s", "time until the new pod is Ready")
    report.figure("api_writes", writer.total, "", "API writes attempted")
    report.figure("api_writes_failed", len(writer.failed), "", "API writes failed (whole run)")
    report.figure("api_writes_failed_in_gap", writer.failed_between(t0, gap_end + 1.0), "",
                  "API writes failed during the gap")
    report.figure("api_writes_unknown", len(writer.unknown), "", "API writes with unknown outcome")
    report.figure("api_longest_unavailable_s", writer.longest_gap(), "s",
                  "longest time without an acknowledged write")
    report.figure("acked_writes_lost", len(lost), "", "acknowledged writes lost")
    report.figure("vip_requests", traffic.total, "", "VIP requests")
    report.figure("vip_requests_failed", len(traffic.failures), "", "VIP requests failed")
    report.figure("vip_pods_answering", len(traffic.by_pod), "", "pods that answered via the VIP")
    report.figure("old_leader_rejoin_s", times["rejoin"], "s",
                  f"old leader caught up after {'resuming' if freeze else 'restart'}")

    report.check("new leader elected", times["leader"] <= run["timeout"],
                 f"{old} -> {new} in {times['leader']:.2f}s")
    report.check("controllers acted after failover", "controllers" in times,
                 f"new pod {times['controllers']:.2f}s after the fault")
    report.check("no failed VIP requests", not traffic.failures,
                 f"{len(traffic.failures)} of {traffic.total} failed"
                 + (f" (first: {traffic.failures[0][1]})" if traffic.failures else ""))
    report.check("no acknowledged write lost", not lost,
                 f"{len(lost)} of {len(writer.acked)} acknowledged writes missing"
                 + (f" (e.g. {lost[:3]})" if lost else ""))
    member: dict[str, Any] = next((m for m in (after[1].get("members", []) if after else []) if m.get("name") == old), {})
    report.check("old leader rejoined and caught up", member.get("lag") is not None and member["lag"] <= 5,
                 f"leader now {after[0] if after else 'none'}; {old} lag {member.get('lag')}, "
                 f"caught up {times['rejoin']:.2f}s after its {'resume' if freeze else 'restart'}")
    if freeze:
        old_status = await site.master_status(old) or {}
        report.check("resumed old leader neither leads nor runs the duties",
                     not old_status.get("isLeader")
                     and not (old_status.get("leaderDuties") or {}).get("runningHere"),
                     f"{old}: isLeader={old_status.get('isLeader')}, duties here="
                     f"{(old_status.get('leaderDuties') or {}).get('runningHere')}")


SCENARIO = Scenario(
    name="leader-failover",
    summary="kill -9 the Raft leader under load: time to a new leader, time until controllers act, "
            "failed API writes in the gap, failed VIP requests (must be 0), lost writes (must be 0).",
    body=body,
    params=[
        Param("warmup", 5.0, 2.0, "Seconds of traffic before the kill."),
        Param("observe", 5.0, 2.0, "Seconds of traffic after the workload recovered."),
        Param("timeout", 30.0, 30.0, "Seconds to wait for each recovery step before failing."),
        Param("freeze", 0, 0, "1: freeze the leader (SIGSTOP, later SIGCONT) instead of kill -9; "
              "it must come back as a follower."),
    ],
)

if __name__ == "__main__":
    sys.exit(SCENARIO.main())
