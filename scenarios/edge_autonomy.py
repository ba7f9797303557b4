"""edge-autonomy: every master is gone for a while; the site keeps serving on its own.

Purpose: an edge site loses its control plane (the masters' host reboots, the uplink to a
central site is down). The pods keep answering through the Service VIP, a node agent restarted
meanwhile adopts its running containers from its cache instead of recreating them, and when
the masters come back no pod is recreated: the same pods (UIDs) in the same containers (IDs).
"""

from __future__ import annotations

import sys

import trio

from cli._local import is_running

from ._harness import ScenarioError, load, wait_until
from ._runner import Param, Run, Scenario


async def body(run: Run) -> None:
    site, report = run.site, run.report
    await site.deploy()
    before_pods = {p.name: p for p in await site.pods()}
    before_containers = await site.containers()
    agent = site.node_names()[0]
    run.step(f"{len(before_pods)} pods in {len(before_containers)} containers; starting traffic")
    times: dict[str, float] = {}
    async with load(site, writes=False) as (traffic, _):
        await trio.sleep(run["warmup"])
        run.step(f"stopping every master for {run['outage']}s")
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            for name in site.master_names():
                nursery.start_soon(site.stop, name)
        times["down"] = trio.current_time() - t0
        if await site.leader() is not None:
            raise ScenarioError("a master still answers after every master was stopped")
        await trio.sleep(run["outage"] / 2)
        run.step(f"restarting the agent of {agent} while no master runs")
        await site.stop(agent)
        site.restart(agent)
        await trio.sleep(run["outage"] / 2)
        agent_alive = is_running(site.record(agent))
        outage_end = trio.current_time()
        during = (traffic.total, len(traffic.failures))
        run.step("starting every master again")
        for name in site.master_names():
            site.restart(name)
        await site.wait_leader(timeout=run["timeout"], duties=True)
        times["leader"] = trio.current_time() - outage_end

        async def nodes_ready() -> bool:
            return all([await site.node_ready(n) for n in site.node_names()])

        await wait_until("every node Ready again", nodes_ready, run["timeout"])
        times["nodes"] = trio.current_time() - outage_end
        await site.wait_ready(site.replicas, timeout=run["timeout"])
        run.step(f"masters back: leader after {times['leader']:.2f}s, nodes Ready after "
                 f"{times['nodes']:.2f}s; observing for {run['observe']}s")
        await trio.sleep(run["observe"])
    after_pods = {p.name: p for p in await site.pods()}
    after_containers = await site.containers()
    recreated = sorted(n for n, p in before_pods.items()
                       if n not in after_pods or after_pods[n].uid != p.uid)
    new_pods = sorted(set(after_pods) - set(before_pods))
    replaced = sorted(set(before_containers) - set(after_containers))
    restarted = sorted(n for n, p in after_pods.items()
                       if n in before_pods and p.restarts > before_pods[n].restarts)
    report.figure("outage_s", outage_end - t0, "s", "masters down for")
    report.figure("vip_requests_during_outage", during[0], "", "VIP requests while masters were down")
    report.figure("vip_failed_during_outage", during[1], "", "VIP requests failed while masters were down")
    report.figure("vip_requests", traffic.total, "", "VIP requests (whole run)")
    report.figure("vip_requests_failed", len(traffic.failures), "", "VIP requests failed (whole run)")
    report.figure("time_to_leader_after_outage_s", times["leader"], "s", "leader after masters restart")
    report.figure("time_to_nodes_ready_after_outage_s", times["nodes"], "s", "nodes Ready after masters restart")
    report.figure("pods_recreated", len(recreated) + len(new_pods), "", "pods recreated")
    report.figure("containers_replaced", len(replaced), "", "containers replaced")
    report.figure("container_restarts", len(restarted), "", "pods with more container restarts")
    report.check("VIP served while masters were down", during[1] == 0 and during[0] > 0,
                 f"{during[1]} of {during[0]} failed")
    report.check("no failed VIP requests", not traffic.failures,
                 f"{len(traffic.failures)} of {traffic.total} failed"
                 + (f" (first: {traffic.failures[0][1]})" if traffic.failures else ""))
    report.check("agent restarted without masters", bool(agent_alive),
                 f"{agent} running again while the masters were down")
    report.check("no pod recreated", not recreated and not new_pods,
                 f"recreated {recreated}, new {new_pods}" if recreated or new_pods
                 else f"same {len(after_pods)} pod UIDs")
    report.check("same containers", not replaced,
                 f"changed container ids: {[c[:12] for c in replaced]}" if replaced
                 else f"same {len(after_containers)} container IDs")


SCENARIO = Scenario(
    name="edge-autonomy",
    summary="stop every master for a while; pods keep serving through the VIP, a node agent "
            "restarts meanwhile; masters come back; no pod is recreated.",
    body=body,
    params=[
        Param("outage", 60.0, 10.0, "Seconds every master stays down."),
        Param("warmup", 3.0, 1.0, "Seconds of traffic before the masters stop."),
        Param("observe", 5.0, 2.0, "Seconds of traffic after the masters are back."),
        Param("timeout", 60.0, 45.0, "Seconds to wait for each recovery step before failing."),
    ],
)

if __name__ == "__main__":
    sys.exit(SCENARIO.main())
