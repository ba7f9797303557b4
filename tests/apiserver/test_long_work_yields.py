"""Long responses leave the event loop free in between: a large list and a watch's large initial
state are encoded in slices, so a cheap request is not held behind them (and the answers are
the same)."""

from __future__ import annotations

import json

import pytest
import trio

from controlplane.apiserver import _app, _watch

from .conftest import Api


def _cm(i: int) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm{i:03d}"}, "data": {"i": str(i)}}


async def _ticks_during(coro_fn, counter: list[int]) -> object:  # type: ignore[no-untyped-def]
    async def tick() -> None:
        while True:
            counter[0] += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        await trio.lowlevel.checkpoint()
        counter[0] = 0
        result = await coro_fn()
        nursery.cancel_scope.cancel()
    return result


async def test_a_large_list_is_encoded_in_slices(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    names = []
    for i in range(60):
        created = await api.registry.create("configmaps", "default", _cm(i))
        names.append(created["metadata"]["name"])
    app = api.app.inner if hasattr(api.app, "inner") else api.app
    kvs = (await api.registry.list_kvs("configmaps", "default"))[1]
    whole = await app._items_json(kvs)
    monkeypatch.setattr(_app, "_ENCODE_SLICE", 5)
    ticks = [0]
    sliced = await _ticks_during(lambda: app._items_json(kvs), ticks)
    assert sliced == whole
    assert ticks[0] >= 10  # the loop ran other tasks between the 12 slices
    listed = json.loads(b"[" + sliced + b"]")  # type: ignore[operator]
    assert [c["metadata"]["name"] for c in listed] == names
    # and over HTTP, the list is complete
    response = await api.client.get(f"{api.url}/api/v1/namespaces/default/configmaps", headers=api.headers())
    assert [c["metadata"]["name"] for c in response.json()["items"]] == names


async def test_a_watch_sent_in_slices_is_complete_and_in_order(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_watch, "_SEND_SLICE", 4)
    for i in range(30):
        await api.registry.create("configmaps", "default", _cm(i))
    seen: list[str] = []
    async with api.client.stream("GET", f"{api.url}/api/v1/namespaces/default/configmaps",
                                 params={"watch": "true", "timeoutSeconds": "1"}, headers=api.headers()) as r:
        async for line in r.aiter_lines():
            if line.strip():
                event = json.loads(line)
                seen.append(event["object"]["metadata"]["name"])
    assert seen == [f"cm{i:03d}" for i in range(30)]
