"""Registry semantics in-process (what the scheduler and controllers rely on), on a MemoryStore."""

from __future__ import annotations

import pytest
import trio

from controlplane.errors import ApiError
from controlplane.registry import Registry
from raftstore import MemoryStore


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
