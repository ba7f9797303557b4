"""full-restart: stop every master and every agent, start them all again.

Purpose: a power cut for the whole site, survived. Everything the masters acknowledged is
still there afterwards (every object, with the same UID and spec), and every pod that was
running runs again as the same pod, in the same container, on the same node.
"""

from __future__ import annotations

import sys
from typing import Any

import trio

from ._harness import load, wait_until
from ._runner import Param, Run, Scenario

# What the comparison covers: the workload, its Service plumbing, the writes, the nodes.
RESOURCES = ("deployments", "replicasets", "pods", "services", "endpoints", "configmaps")


async def snapshot(run: Run) -> dict[str, dict[str, Any]]:
    site = run.site
    assert site.client is not None
    out: dict[str, dict[str, Any]] = {}
    for plural in RESOURCES:
        body = await site.client.list_all(plural, namespace=site.namespace)
        for item in body.get("items", []):
            meta = item["metadata"]
            out[f"{plural}/{meta['name']}"] = {"uid": meta.get("uid"), "spec": item.get("spec"),
                                              "data": item.get("data")}
    for item in (await site.client.list_all("nodes")).get("items", []):
        out[f"nodes/{item['metadata']['name']}"] = {"uid": item["metadata"].get("uid"), "spec": None,
                                                   "data": None}
    return out


async def body(run: Run) -> None:
    site, report = run.site, run.report
    # Every agent stops, and an agent stopped cleanly removes its rules: the clients' host runs
    # a netproxy of its own (as a client machine of the site would).
    await site.deploy(host_proxy=True)
    run.step("writing through the API for a while")
    async with load(site) as (_, writer):
        await trio.sleep(run["writes"])
    before = await snapshot(run)
    pods_before = {p.name: p for p in await site.pods()}
    containers_before = await site.containers()
    run.step(f"{len(before)} objects, {len(pods_before)} pods in {len(containers_before)} "
             "containers; stopping every agent and master")
    times: dict[str, float] = {}
    # Clients keep using the Service the whole time: the pods' containers and this host's
    # netproxy rules do not depend on a running agent or master.
    async with load(site, writes=False) as (traffic, _):
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            for name in site.node_names():
                nursery.start_soon(site.stop, name)
        async with trio.open_nursery() as nursery:
            for name in site.master_names():
                nursery.start_soon(site.stop, name)
        stopped = trio.current_time() - t0
        await trio.sleep(run["down"])
        run.step("starting every master and agent again")
        t1 = trio.current_time()
        for name in site.master_names() + site.node_names():
            site.restart(name)
        await site.wait_leader(timeout=run["timeout"], duties=True)
        times["leader"] = trio.current_time() - t1

        async def nodes_ready() -> bool:
            return all([await site.node_ready(n) for n in site.node_names()])

        await wait_until("every node Ready again", nodes_ready, run["timeout"])
        times["nodes"] = trio.current_time() - t1
        await site.wait_ready(len(pods_before), timeout=run["timeout"])
        times["pods"] = trio.current_time() - t1
        await trio.sleep(run["observe"])
    after = await snapshot(run)
    pods_after = {p.name: p for p in await site.pods()}
    containers_after = await site.containers()
    lost = await writer.lost()
    missing = sorted(k for k in before if k not in after)
    changed = sorted(k for k in before if k in after and after[k]["uid"] != before[k]["uid"])
    spec_changed = sorted(k for k in before if k in after and not k.startswith(("pods/", "endpoints/"))
                          and (after[k]["spec"], after[k]["data"]) != (before[k]["spec"], before[k]["data"]))
    moved = sorted(n for n, p in pods_before.items()
                   if n not in pods_after or (pods_after[n].uid, pods_after[n].node) != (p.uid, p.node))
    replaced = sorted(set(containers_before) - set(containers_after))
    report.figure("objects_compared", len(before), "", "objects compared")
    report.figure("acked_writes", len(writer.acked), "", "acknowledged writes before the stop")
    report.figure("stop_s", stopped, "s", "time to stop everything")
    report.figure("time_to_leader_s", times["leader"], "s", "leader after start")
    report.figure("time_to_nodes_ready_s", times["nodes"], "s", "nodes Ready after start")
    report.figure("time_to_pods_ready_s", times["pods"], "s", "every pod Ready after start")
    report.figure("objects_missing", len(missing), "", "objects missing")
    report.figure("objects_changed", len(changed) + len(spec_changed), "", "objects changed")
    report.figure("pods_recreated_or_moved", len(moved), "", "pods recreated or moved")
    report.figure("containers_replaced", len(replaced), "", "containers replaced")
    report.figure("acked_writes_lost", len(lost), "", "acknowledged writes lost")
    report.figure("vip_requests", traffic.total, "", "VIP requests (stop, restart, after)")
    report.figure("vip_requests_failed", len(traffic.failures), "", "VIP requests failed")
    report.check("every object is back", not missing and not changed and not spec_changed,
                 f"missing {missing[:5]}, new UID {changed[:5]}, changed {spec_changed[:5]}"
                 if missing or changed or spec_changed else f"all {len(before)} objects as before")
    report.check("no acknowledged write lost", not lost, f"{len(lost)} of {len(writer.acked)} missing")
    report.check("every pod as before", not moved,
                 f"recreated or moved: {moved}" if moved else f"same {len(pods_after)} pods on the same nodes")
    report.check("same containers", not replaced,
                 f"replaced: {[c[:12] for c in replaced]}" if replaced
                 else f"same {len(containers_after)} container IDs")
    report.check("VIP served throughout", traffic.ok > 0 and not traffic.failures,
                 f"{len(traffic.failures)} of {traffic.total} failed"
                 + (f" (first: {traffic.failures[0][1]})" if traffic.failures else ""))


SCENARIO = Scenario(
    name="full-restart",
    summary="stop all masters and agents, start them again: every object and every running pod "
            "is as before.",
    body=body,
    params=[
        Param("writes", 3.0, 2.0, "Seconds of API writes before the stop."),
        Param("down", 5.0, 1.0, "Seconds everything stays down."),
        Param("observe", 3.0, 2.0, "Seconds of VIP traffic after every pod is Ready again."),
        Param("timeout", 60.0, 45.0, "Seconds to wait for each recovery step before failing."),
    ],
)

if __name__ == "__main__":
    sys.exit(SCENARIO.main())
