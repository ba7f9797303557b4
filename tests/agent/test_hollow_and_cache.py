"""The simulated (hollow) runtime driving the real pod syncer, and the on-disk pod cache."""

from __future__ import annotations

import json
import os
from typing import Any

import trio

from edge_agent import BackoffPolicy, HollowRuntime, PodCache, PodSyncer

from .conftest import pod, wait_for


async def test_hollow_runtime_runs_many_pods_without_containers(node_name):
    runtime = HollowRuntime(node_name)
    statuses: dict[str, dict[str, Any]] = {}
    s = PodSyncer(runtime, node_name=node_name, node_address="127.0.1.201",
                  status_sink=lambda p, st, ports: statuses.__setitem__(p["metadata"]["name"], st))
    async with trio.open_nursery() as nursery:
        await nursery.start(s.serve)
        for i in range(200):
            s.upsert(pod(f"h-{i}", node_name=node_name,
                         readinessProbe={"httpGet": {"port": 80}}))
        await wait_for(lambda: len(statuses) == 200 and all(
            st["phase"] == "Running" and st["containerStatuses"][0]["ready"]
            for st in statuses.values()), 10, "200 hollow pods Running and Ready")
        ips = {st["podIP"] for st in statuses.values()}
        assert all(ip.startswith("198.51.100.") for ip in ips)  # documentation range: fake
        assert all(st["containerStatuses"][0]["containerID"].startswith("hollow://")
                   for st in statuses.values())
        nursery.cancel_scope.cancel()


async def test_hollow_container_exit_follows_restart_policy_and_backoff(node_name):
    runtime = HollowRuntime(node_name)
    s = PodSyncer(runtime, node_name=node_name, node_address="127.0.1.201",
                  backoff=BackoffPolicy(base=0.5, cap=2.0), resync_interval=0.1)
    async with trio.open_nursery() as nursery:
        await nursery.start(s.serve)
        p = pod("crashy", node_name=node_name)
        uid = p["metadata"]["uid"]
        s.upsert(p)

        def latest():
            cs = sorted(s.containers.get(uid, []), key=lambda c: c.restart_count)
            return cs[-1] if cs else None

        await wait_for(lambda: latest() and latest().running, 5, "started")
        times = []
        for expected in (1, 2, 3):
            runtime.kill(latest().id, exit_code=1)
            t0 = trio.current_time()
            await wait_for(lambda e=expected: latest().restart_count == e and latest().running,
                           10, f"restart {expected}")
            times.append(trio.current_time() - t0)
        # Immediate, then 0.5 s, then 1 s (kubelet's doubling, scaled down). Lower bounds are
        # the rule; upper bounds only catch a back-off far too long (loaded CI machines).
        assert times[0] < 0.45 + 1.0, times
        assert 0.45 <= times[1] < 0.5 + 2.0, times
        assert 0.95 <= times[2] < 1.0 + 2.0, times
        nursery.cancel_scope.cancel()


async def test_hollow_runtime_reports_exits_as_events_so_rounds_need_no_relist(node_name):
    """The hollow runtime says when a container exits (as Docker's events do): pods arriving
    one by one are synced without listing the node's containers each time, and an exit is
    acted on at once although the timed relist is a minute away."""
    runtime = HollowRuntime(node_name)
    running: dict[str, str] = {}  # pod name -> its container id, from the statuses handed out

    def sink(p: dict[str, Any], st: dict[str, Any], ports: str) -> None:
        cs = st["containerStatuses"][0]
        if "running" in cs["state"]:
            running[p["metadata"]["name"]] = cs["containerID"]

    s = PodSyncer(runtime, node_name=node_name, node_address="127.0.1.201", status_sink=sink,
                  resync_interval=60.0, relist_interval=60.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(s.serve)
        await wait_for(lambda: s.events_live, 5, "the runtime's events followed")
        relists = s.relists
        for i in range(20):
            s.upsert(pod(f"ev-{i}", node_name=node_name))
            await wait_for(lambda i=i: f"ev-{i}" in running, 5, f"ev-{i} Running")
        assert s.relists - relists <= 1, s.relists - relists  # not one per pod (was 20+)
        before = running["ev-3"]
        runtime.kill(before.removeprefix("hollow://"), exit_code=1)
        await wait_for(lambda: running["ev-3"] != before, 5, "ev-3 restarted after its exit")
        nursery.cancel_scope.cancel()


async def test_hollow_pull_failure_is_err_image_pull(node_name):
    runtime = HollowRuntime(node_name, missing_images=frozenset({"127.0.0.1:24999/x:1"}))
    seen: list[str] = []
    s = PodSyncer(runtime, node_name=node_name, node_address="127.0.1.201",
                  status_sink=lambda p, st, ports: seen.append(
                      st["containerStatuses"][0]["state"].get("waiting", {}).get("reason", "")))
    async with trio.open_nursery() as nursery:
        await nursery.start(s.serve)
        s.upsert(pod("nopull", node_name=node_name, image="127.0.0.1:24999/x:1"))
        await wait_for(lambda: "ImagePullBackOff" in seen, 5, "ImagePullBackOff")
        assert seen.index("ErrImagePull") < seen.index("ImagePullBackOff")
        nursery.cancel_scope.cancel()


async def test_pod_cache_round_trip_and_atomic_files(tmp_path):
    cache = PodCache(tmp_path / "pods")
    a, b = pod("a", node_name="n"), pod("b", node_name="n")
    a["metadata"]["resourceVersion"] = "10"
    a["status"] = {"phase": "Running"}
    assert await cache.put(a) is True
    assert await cache.put(b) is True
    # Only metadata/spec count: a new resourceVersion or status is not rewritten.
    a2 = json.loads(json.dumps(a))
    a2["metadata"]["resourceVersion"] = "11"
    a2["status"] = {"phase": "Succeeded"}
    assert await cache.put(a2) is False
    files = sorted(os.listdir(tmp_path / "pods"))
    assert files == sorted(f"{p['metadata']['uid']}.json" for p in (a, b))  # no temp files left
    # A torn temporary file from a crash mid-write is ignored and cleaned up.
    (tmp_path / "pods" / ".junk.tmp").write_text("{")
    (tmp_path / "pods" / "bad.json").write_text("{not json")
    fresh = PodCache(tmp_path / "pods")
    loaded = {p["metadata"]["name"]: p for p in fresh.load()}
    assert set(loaded) == {"a", "b"}
    assert loaded["a"].get("status") is None and "resourceVersion" not in loaded["a"]["metadata"]
    assert loaded["a"]["spec"] == a["spec"]
    assert not (tmp_path / "pods" / ".junk.tmp").exists()
    await fresh.replace_all([b])
    assert {p["metadata"]["name"] for p in PodCache(tmp_path / "pods").load()} == {"b"}
    # A cache that does not persist (hollow-node runners) writes and keeps nothing.
    memoryless = PodCache(tmp_path / "other")
    memoryless.persist = False
    assert await memoryless.put(a) is False
    await memoryless.remove(a["metadata"]["uid"])
    await memoryless.replace_all([a, b])
    assert not (tmp_path / "other").exists()


async def test_always_pull_falls_back_to_the_local_image_when_the_registry_is_gone(node_name):
    # Edge autonomy: a site that lost its registry still (re)starts pods from local images.
    image = "127.0.0.1:24999/app:latest"
    runtime = HollowRuntime(node_name, unreachable_images=frozenset({image}))
    s = PodSyncer(runtime, node_name=node_name, node_address="127.0.1.201")
    async with trio.open_nursery() as nursery:
        await nursery.start(s.serve)
        p = pod("offline", node_name=node_name, image=image, imagePullPolicy="Always")
        s.upsert(p)
        await wait_for(lambda: any(c.running for c in s.containers.get(p["metadata"]["uid"], [])),
                       5, "started from the local image")
        nursery.cancel_scope.cancel()


async def test_the_echo_of_a_nodes_own_status_write_needs_no_sync_but_changes_do(node_name):
    runtime = HollowRuntime(node_name)
    written: list[dict[str, Any]] = []
    finalized: list[str] = []

    async def on_finalized(p: dict[str, Any]) -> None:
        finalized.append(p["metadata"]["name"])

    s = PodSyncer(runtime, node_name=node_name, node_address="127.0.1.201",
                  status_sink=lambda p, st, ports: written.append(st),
                  on_finalized=on_finalized)
    p = pod("echo", node_name=node_name)
    p["metadata"]["resourceVersion"] = "10"
    async with trio.open_nursery() as nursery:
        await nursery.start(s.serve)
        s.upsert(p)
        await wait_for(lambda: written and written[-1]["phase"] == "Running", 10, "Running")
        await s.wait_rounds(1)
        n_written = len(written)

        def stored(status: dict[str, Any], rv: str, **metadata: Any) -> dict[str, Any]:
            # What the API server's watch sends back: our status merged into the stored one
            # (qosClass is the server's), a new resourceVersion.
            return {**p, "metadata": {**p["metadata"], "resourceVersion": rv, **metadata},
                    "status": {**status, "qosClass": "BestEffort"}}

        s.upsert(stored(written[-1], "11"))  # the echo of the write
        await s.wait_rounds(1)
        assert s.echoes_skipped == 1
        assert s.desired[p["metadata"]["uid"]]["metadata"]["resourceVersion"] == "11"
        syncs = s.inline_syncs + s.task_syncs
        s.upsert(stored(written[-1], "12"))
        await trio.sleep(0.2)  # a window in which no sync may start (a forced round would sync)
        assert (s.echoes_skipped, s.inline_syncs + s.task_syncs) == (2, syncs)
        # Someone else's status (the node controller marks the pod NotReady) is not ours.
        other = {**written[-1], "conditions": [{"type": "Ready", "status": "False"}]}
        s.upsert(stored(other, "13"))
        await wait_for(lambda: s.inline_syncs + s.task_syncs > syncs, 5, "a sync")
        assert s.echoes_skipped == 2
        # A label change with our status is synced, and so is a deletion.
        syncs = s.inline_syncs + s.task_syncs
        s.upsert(stored(written[-1], "14", labels={"a": "b"}))
        await wait_for(lambda: s.inline_syncs + s.task_syncs > syncs, 5, "a sync")
        s.upsert(stored(written[-1], "15", labels={"a": "b"},
                        deletionTimestamp="2026-01-01T00:00:00Z"))
        await wait_for(lambda: finalized == ["echo"], 5, "the deleted pod finalized")
        assert s.echoes_skipped == 2
        assert len(written) == n_written  # nothing above changed what the node reports
        nursery.cancel_scope.cancel()
