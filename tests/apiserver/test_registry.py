"""Registry semantics in-process (what the scheduler and controllers rely on), on a MemoryStore."""

from __future__ import annotations

import copy
import random
import socket
from pathlib import Path

import pytest
import trio

from controlplane.errors import ApiError
from controlplane.registry import Registry
from raftstore import MemoryStore, ReplicaConfig, open_raft_store


@pytest.fixture
async def registry() -> Registry:
    reg = Registry(MemoryStore(), clock=lambda: 1_700_000_000.0)
    await reg.ensure_namespaces()
    return reg


def pod(name: str, node: str | None = None, **labels: str) -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "nginx"}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "labels": labels}, "spec": spec}


async def test_metadata_defaults_and_timestamps(registry: Registry) -> None:
    created = await registry.create("pods", "default", pod("a"))
    meta = created["metadata"]
    assert meta["creationTimestamp"] == "2023-11-14T22:13:20Z"
    assert meta["generation"] == 1 and meta["resourceVersion"] == str(registry.store.revision)
    assert "managedFields" not in meta


async def test_orphan_and_foreground_finalizers(registry: Registry) -> None:
    rs = {"metadata": {"name": "rs"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                                              "template": {"metadata": {"labels": {"a": "b"}},
                                                           "spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    await registry.create("replicasets.apps", "default", rs)
    marked = await registry.delete("replicasets.apps", "default", "rs", propagation_policy="Orphan")
    assert marked["metadata"]["finalizers"] == ["orphan"]
    assert marked["metadata"]["deletionTimestamp"] == "2023-11-14T22:13:20Z"
    # the GC controller removes its finalizer with an update: the object goes
    current = await registry.get("replicasets.apps", "default", "rs")
    current["metadata"]["finalizers"] = []
    await registry.update("replicasets.apps", "default", "rs", current)
    with pytest.raises(ApiError) as err:
        await registry.get("replicasets.apps", "default", "rs")
    assert err.value.code == 404


async def test_pod_grace_rules(registry: Registry) -> None:
    await registry.create("pods", "default", pod("bound", node="n1"))
    marked = await registry.delete("pods", "default", "bound", grace_period_seconds=10)
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 10
    assert marked["metadata"]["deletionTimestamp"] == "2023-11-14T22:13:30Z"
    # a longer grace period cannot extend a pending one; a shorter one shortens it
    again = await registry.delete("pods", "default", "bound", grace_period_seconds=60)
    assert again["metadata"]["deletionGracePeriodSeconds"] == 10
    await registry.delete("pods", "default", "bound", grace_period_seconds=0)
    with pytest.raises(ApiError):
        await registry.get("pods", "default", "bound")
    # a finished pod goes at once even when bound
    await registry.create("pods", "default", pod("done", node="n1"))
    current = await registry.get("pods", "default", "done")
    current["status"] = {"phase": "Succeeded"}
    await registry.update_status("pods", "default", "done", current)
    await registry.delete("pods", "default", "done")
    with pytest.raises(ApiError):
        await registry.get("pods", "default", "done")


async def test_lease_put_creates(registry: Registry) -> None:
    lease = {"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40}}
    created = await registry.update("leases.coordination.k8s.io", "kube-node-lease", "n1", lease)
    assert created["metadata"]["uid"]


async def test_watch_selector_transitions(registry: Registry) -> None:
    start = str(registry.store.revision)
    await registry.create("pods", "default", pod("w", app="a"))
    await registry.patch("pods", "default", "w", "merge", {"metadata": {"labels": {"app": "b"}}})
    await registry.patch("pods", "default", "w", "merge", {"metadata": {"labels": {"app": "a"}}})
    await registry.delete("pods", "default", "w")
    seen = []
    with trio.fail_after(5):
        async for batch in registry.watch("pods", "default", resource_version=start, label_selector="app=a"):
            seen += [(ev.type, ev.object["metadata"]["labels"]["app"]) for ev in batch]
            if len(seen) >= 4:
                break
    assert seen == [("ADDED", "a"), ("DELETED", "a"), ("ADDED", "a"), ("DELETED", "a")]


async def test_status_update_ignores_spec_and_main_update_ignores_status(registry: Registry) -> None:
    created = await registry.create("pods", "default", pod("s"))
    created["spec"]["containers"][0]["image"] = "changed"
    created["status"] = {"phase": "Running"}
    after = await registry.update_status("pods", "default", "s", created)
    assert after["status"]["phase"] == "Running" and after["spec"]["containers"][0]["image"] == "nginx"
    after["status"] = {"phase": "Failed"}
    after["metadata"]["labels"] = {"x": "y"}
    main = await registry.update("pods", "default", "s", after)
    assert main["status"]["phase"] == "Running" and main["metadata"]["labels"] == {"x": "y"}


class LaggingReplica:
    """A MemoryStore whose local (non-linearizable) reads see an older state, like a follower
    that has not applied the latest entries yet; everything else is the real store."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self.stale: dict[str, object] = {}

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def get(self, key: str, *, linearizable: bool = True):
        if not linearizable and key in self.stale:
            return self.stale[key]
        return await self._store.get(key, linearizable=linearizable)


async def test_writes_through_a_lagging_replica_see_the_latest_version() -> None:
    store = MemoryStore()
    reg = Registry(store)
    await reg.ensure_namespaces()
    created = await reg.create("configmaps", "default", {"metadata": {"name": "c"}, "data": {"n": "1"}})
    lagging = LaggingReplica(store)
    follower = Registry(lagging)
    key = "/registry/configmaps/default/c"
    # the follower has not applied the create yet: update/patch/delete must not answer 404
    lagging.stale[key] = None
    patched = await follower.patch("configmaps", "default", "c", "merge", {"data": {"n": "2"}})
    assert patched["data"] == {"n": "2"}
    # nor 409 for a resourceVersion newer than its local copy
    lagging.stale[key] = await store.get(key)
    lagging.stale[key] = type(lagging.stale[key])(key, lagging.stale[key].value, lagging.stale[key].create_revision,
                                                  int(created["metadata"]["resourceVersion"]), 1)
    patched["data"] = {"n": "3"}
    updated = await follower.update("configmaps", "default", "c", patched)
    assert updated["data"] == {"n": "3"}
    lagging.stale[key] = None
    deleted = await follower.delete("configmaps", "default", "c", preconditions={"uid": created["metadata"]["uid"]})
    assert deleted["data"] == {"n": "3"}


async def test_decisions_on_a_lagging_replica_are_taken_on_the_latest_version() -> None:
    store = MemoryStore()
    reg = Registry(store)
    await reg.ensure_namespaces()
    await reg.create("configmaps", "default", {"metadata": {"name": "c"}, "data": {"n": "1"}})
    key = "/registry/configmaps/default/c"
    old = await store.get(key)
    await reg.patch("configmaps", "default", "c", "merge", {"data": {"n": "2"}})
    lagging = LaggingReplica(store)
    follower = Registry(lagging)
    lagging.stale[key] = old  # the follower still has n=1
    # Setting n back to 1 is "no change" on the stale copy, but a change of the latest one.
    patched = await follower.patch("configmaps", "default", "c", "merge", {"data": {"n": "1"}})
    assert patched["data"] == {"n": "1"}
    assert (await reg.get("configmaps", "default", "c"))["data"] == {"n": "1"}
    # A precondition that the stale copy fails but the latest one meets.
    latest = await reg.get("configmaps", "default", "c")
    lagging.stale[key] = old
    latest["data"] = {"n": "3"}
    updated = await follower.update("configmaps", "default", "c", latest)
    assert updated["data"] == {"n": "3"}



# A single real Raft replica for the list-pages test (this helper's loopback address and ports).
_RAFT_HOST = "127.0.66.1"
_RAFT_PORTS = range(24500, 25000)


def _free_raft_port() -> int:
    for port in random.sample(_RAFT_PORTS, 50):
        with socket.socket() as s:
            try:
                s.bind((_RAFT_HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_RAFT_PORTS}")


@pytest.mark.parametrize("cached", [False, True])
async def test_list_pages_on_a_raft_store_show_the_first_pages_state(
        tmp_path: Path, nursery: trio.Nursery, cached: bool) -> None:
    # The as-of read of a continue page through the replicated store's own watch history and
    # revisions (RaftStore.watch / range), or through the watch cache fed by that store.
    port = _free_raft_port()
    config = ReplicaConfig(self_address=f"{_RAFT_HOST}:{port}", peers=(), data_dir=str(tmp_path / "raft"))
    async with open_raft_store(config) as store:
        with trio.fail_after(10):
            while not store.is_leader():
                await trio.sleep(0.01)
        reg = Registry(store)
        if cached:
            await nursery.start(reg.serve_watch_cache)
            with trio.fail_after(5):
                while not reg.watch_cache.ready:  # type: ignore[union-attr]
                    await trio.sleep(0.01)
        await reg.ensure_namespaces()
        for i in range(7):
            await reg.create("configmaps", "default", {"metadata": {"name": f"c{i}"}, "data": {"n": "0"}})
        expected = await reg.list("configmaps", "default")
        page = await reg.list("configmaps", "default", limit=2)
        items = list(page["items"])
        while page["metadata"].get("continue"):
            n = len(items)
            if n + 1 < 7:
                await reg.delete("configmaps", "default", f"c{n + 1}")
            await reg.create("configmaps", "default", {"metadata": {"name": f"c{n}x"}, "data": {}})
            await reg.patch("configmaps", "default", f"c{n}", "merge", {"data": {"n": "1"}})
            page = await reg.list("configmaps", "default", limit=2, continue_token=page["metadata"]["continue"])
            assert page["metadata"]["resourceVersion"] == expected["metadata"]["resourceVersion"]
            items += page["items"]
        assert [(c["metadata"]["name"], c["metadata"]["resourceVersion"], c["data"]) for c in items] == [
            (c["metadata"]["name"], c["metadata"]["resourceVersion"], c["data"]) for c in expected["items"]]
        assert [c["data"] for c in items] == [{"n": "0"}] * 7
        nursery.cancel_scope.cancel()


_STATUS_PATCHES = [
    ("merge", {"metadata": {"uid": None}, "status": {"phase": "Running", "hostIP": "127.0.0.1",
                                                    "conditions": [{"type": "Ready", "status": "True"}]}}),
    ("merge", {"status": {"phase": "Pending"}}),  # what is stored already: no write
    ("merge", {"status": None}),
    ("merge", {"spec": {"nodeName": "elsewhere"}, "metadata": {"labels": {"x": "y"}},
               "status": {"podIP": "10.0.0.9"}}),  # a status write ignores all but status
    ("merge", {"metadata": {"resourceVersion": "1"}, "status": {"phase": "Running"}}),  # stale: 409
    ("merge", {"kind": "Service", "status": {}}),  # 400
    ("merge", {"status": {"phase": "Bogus"}}),  # 422
    ("strategic", {"status": {"conditions": [{"type": "Ready", "status": "True"}], "phase": "Running"}}),
    ("strategic", {"status": {"$setElementOrder/conditions": [{"type": "Ready"}, {"type": "Initialized"}],
                              "conditions": [{"type": "Ready", "status": "False"}]}}),
    ("strategic", {"$patch": "replace", "status": {"phase": "Failed"}}),
]


@pytest.mark.parametrize(("patch_type", "patch"), _STATUS_PATCHES)
async def test_status_patch_from_the_one_decode_answers_as_the_two_decode_path(registry: Registry, patch_type, patch):
    """A merge or strategic status PATCH starts from the stored object as decoded for the
    comparison (mutate_keeps_current); the general path gives its mutation a decode of its own.
    Both must store and answer the same, errors included, and leave nothing changed on error."""
    from controlplane import patch as patches
    from controlplane.kinds import by_plural

    pods = by_plural("pods")
    status = {"phase": "Pending", "conditions": [{"type": "Initialized", "status": "True"},
                                                 {"type": "Ready", "status": "False"}]}
    for name in ("fast", "slow"):
        created = await registry.create("pods", "default", pod(name, node="n1"))
        created["status"] = status
        await registry.update_status("pods", "default", name, created)
    patch_for = {}
    for name in ("fast", "slow"):
        body = {**patch, "metadata": dict(patch.get("metadata") or {})}
        if "uid" in body["metadata"]:  # the agent's precondition, with this pod's uid
            body["metadata"]["uid"] = (await registry.get("pods", "default", name))["metadata"]["uid"]
        if not patch.get("metadata"):
            body.pop("metadata")
        patch_for[name] = body
    before = {n: await registry.get("pods", "default", n) for n in ("fast", "slow")}
    sent = copy.deepcopy(patch_for["fast"])

    async def fast():
        return await registry.patch("pods", "default", "fast", patch_type, patch_for["fast"], subresource="status")

    async def slow():
        def mutate(current):
            return Registry._apply_patch(patches, pods, current, patch_type, patch_for["slow"])
        return await registry._update_with(pods, "default", "slow", mutate, subresource="status",
                                           mutate_keeps_current=False)

    outcomes = {}
    for name, call in (("fast", fast), ("slow", slow)):
        try:
            answer = await call()
        except ApiError as exc:
            outcomes[name] = (exc.code, exc.reason, exc.message.replace(name, "NAME"))
        else:
            stored = await registry.get("pods", "default", name)
            assert answer == stored
            unchanged = stored["metadata"]["resourceVersion"] == before[name]["metadata"]["resourceVersion"]
            outcomes[name] = (_comparable(stored), unchanged)
    assert outcomes["fast"] == outcomes["slow"]
    assert patch_for["fast"] == sent  # the patch itself is left as it was


def _comparable(obj: dict) -> dict:
    meta = {k: v for k, v in obj["metadata"].items() if k not in ("name", "uid", "resourceVersion")}
    return {**obj, "metadata": meta}


async def test_a_status_write_naming_an_older_incarnation_is_a_conflict(registry: Registry) -> None:
    """The agent's status PATCH names the pod's uid so that a late status of a deleted pod never
    lands on a new pod of the same name (a precondition, as for the pod itself); so does a PUT
    of the status with the object's uid (Kubernetes' UID precondition of an update)."""
    old = await registry.create("pods", "default", pod("p", node="n1"))
    await registry.delete("pods", "default", "p", grace_period_seconds=0)
    new = await registry.create("pods", "default", pod("p", node="n1"))
    late = {"metadata": {"uid": old["metadata"]["uid"]}, "status": {"phase": "Failed"}}
    for patch_type in ("merge", "strategic"):
        with pytest.raises(ApiError) as err:
            await registry.patch("pods", "default", "p", patch_type, late, subresource="status")
        assert err.value.code == 409 and "Precondition failed: UID in precondition" in err.value.message
    stale = {**old, "status": {"phase": "Failed"}}
    with pytest.raises(ApiError) as err:
        await registry.update_status("pods", "default", "p", stale)
    assert err.value.code == 409
    assert (await registry.get("pods", "default", "p"))["status"]["phase"] == "Pending"
    # the pod's own uid, or none, is written
    own = {"metadata": {"uid": new["metadata"]["uid"]}, "status": {"phase": "Running"}}
    assert (await registry.patch("pods", "default", "p", "merge", own, subresource="status"))["status"]["phase"] == "Running"
    written = await registry.patch("pods", "default", "p", "merge", {"status": {"phase": "Succeeded"}}, subresource="status")
    assert written["status"]["phase"] == "Succeeded"
