"""node-loss: a node dies (its agent and every container killed at once) while clients use the site.

Purpose: the node lifecycle controller notices the silent node (NotReady after the grace
period), its pods are evicted and replaced on the surviving node, and the Service VIP stops
sending clients to the dead node. Reports how long each step took and how many VIP requests
failed on the way (the data plane cannot know a node is dead before the control plane does).
"""

from __future__ import annotations

import sys

import trio

from ._harness import ScenarioError, load, wait_until
from ._runner import Param, Run, Scenario


async def body(run: Run) -> None:
    site, report = run.site, run.report
    if len(site.node_names()) < 2:
        raise ScenarioError("node-loss needs at least 2 nodes")
    await site.deploy()
    pods = await site.pods()
    counts: dict[str, int] = {}
    for pod in pods:
        counts[pod.node] = counts.get(pod.node, 0) + 1
    victim = max(counts, key=lambda n: counts[n])
    on_victim = {p.name for p in pods if p.node == victim}
    run.step(f"{victim} runs {len(on_victim)} of {len(pods)} pods; starting client traffic")
    times: dict[str, float] = {}
    async with load(site) as (traffic, writer):
        await trio.sleep(run["warmup"])
        run.step(f"killing {victim}: its agent (kill -9) and its containers")
        t0 = trio.current_time()
        site.kill(victim)
        killed = await site.kill_containers(victim)

        async def not_ready() -> bool:
            return await site.node_ready(victim) is False

        await wait_until(f"{victim} to be NotReady", not_ready, run["timeout"], poll=0.1)
        times["not_ready"] = trio.current_time() - t0
        run.step(f"{victim} NotReady after {times['not_ready']:.2f}s")
        replaced = await site.wait_ready(site.replicas, avoid_nodes={victim}, timeout=run["timeout"])
        times["replaced"] = trio.current_time() - t0
        run.step(f"{site.replicas} pods Running and Ready elsewhere after {times['replaced']:.2f}s")

        async def vip_only_live_pods() -> bool:
            # The VIP has stopped using the dead pods once a stretch of answers names none.
            start = traffic.ok
            await trio.sleep(1.0)
            recent_failures = traffic.failed_between(trio.current_time() - 1.0, trio.current_time())
            return traffic.ok > start and recent_failures == 0

        await wait_until("the VIP to answer only from live pods", vip_only_live_pods, run["timeout"])
        times["vip_clean"] = trio.current_time() - t0
        last_failure = max((t for t, _ in traffic.failures), default=None)
        await trio.sleep(run["observe"])
    lost = await writer.lost()
    new_names = {p.name for p in replaced}
    report.figure("killed_containers", killed, "", "containers killed on the node")
    report.figure("pods_on_lost_node", len(on_victim), "", "pods on the lost node")
    report.figure("time_to_not_ready_s", times["not_ready"], "s", "time until NotReady")
    report.figure("time_to_replaced_s", times["replaced"], "s",
                  "time until replacements Running+Ready elsewhere")
    report.figure("vip_requests", traffic.total, "", "VIP requests")
    report.figure("vip_requests_failed", len(traffic.failures), "", "VIP requests failed")
    report.figure("vip_failures_end_s", None if last_failure is None else last_failure - t0, "s",
                  "last failed VIP request after the loss")
    report.figure("api_writes", writer.total, "", "API writes attempted")
    report.figure("api_writes_failed", len(writer.failed), "", "API writes failed")
    report.figure("acked_writes_lost", len(lost), "", "acknowledged writes lost")
    if traffic.failures:
        report.note("until the node is judged lost, the VIP still sends some connections to its "
                    "dead pods (refused at once); they stop when its pods leave the Endpoints")
    report.check("node marked NotReady", True, f"{victim} after {times['not_ready']:.2f}s")
    report.check("replacements Running and Ready on other nodes",
                 len(new_names - on_victim) >= len(on_victim),
                 f"{len(replaced)} Ready pods off {victim} after {times['replaced']:.2f}s")
    report.check("VIP serves only live pods again", last_failure is None
                 or last_failure - t0 <= times["vip_clean"],
                 f"{len(traffic.failures)} of {traffic.total} requests failed"
                 + (f", the last {last_failure - t0:.2f}s after the loss" if last_failure else ""))
    report.check("API writes never failed", not writer.failed,
                 f"{len(writer.failed)} of {writer.total} failed")
    report.check("no acknowledged write lost", not lost, f"{len(lost)} missing")


SCENARIO = Scenario(
    name="node-loss",
    summary="kill a node's agent and its containers under load: time until NotReady, time until "
            "replacements are Running and Ready elsewhere, failed VIP requests.",
    body=body,
    params=[
        Param("warmup", 3.0, 1.0, "Seconds of traffic before the node dies."),
        Param("observe", 5.0, 1.0, "Seconds of traffic after the VIP recovered."),
        Param("timeout", 60.0, 45.0, "Seconds to wait for each recovery step before failing."),
    ],
)

if __name__ == "__main__":
    sys.exit(SCENARIO.main())
