"""Feed a ProxyState from the cluster: list + watch Services and Endpoints in every namespace.

Built on :class:`controlplane.client.ApiClient`, which already fails over between masters,
resumes a watch from the last resourceVersion on another master and re-lists on 410 Gone
(yielding a ``RELISTED`` event). What this module adds is the data-plane rule: when the
control plane is unreachable the state is left exactly as it was, so the rules stay, and the
watch is retried with backoff until a master answers again.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import trio

from ._state import ProxyState

log = logging.getLogger(__name__)

# (resource plural, kind) pairs the data plane reads.
WATCHED = (("services", "Service"), ("endpoints", "Endpoints"))
# Backoff between attempts while every master is unreachable: first retry soon (a leader
# election), then settle at a pace that does not load masters that are coming back.
RETRY_FIRST_S = 0.5
RETRY_CAP_S = 10.0
# The on-disk cache is rewritten at most this often: bursts of events cost one write.
CACHE_WRITE_INTERVAL_S = 1.0


def _resource_version(obj: Mapping[str, Any]) -> str | None:
    return (obj.get("metadata") or {}).get("resourceVersion")


async def _watch_kind(
    client: Any, state: ProxyState, plural: str, kind: str, listed: trio.Event
) -> None:
    from controlplane.client import Resource

    setter = state.set_services if kind == "Service" else state.set_endpoints
    # Named by a Resource, not "services": the client then never loads its table of kinds
    # (~6 MB an edge agent would carry for two names it knows).
    resource = Resource(group="", version="v1", plural=plural, namespaced=True, kind=kind)
    rv: str | None = None
    pause = RETRY_FIRST_S
    while True:
        try:
            async for event in client.watch(resource, all_namespaces=True, resource_version=rv):
                pause = RETRY_FIRST_S
                obj = event.get("object") or {}
                if event.get("type") == "RELISTED":
                    setter(obj.get("items") or [])
                    listed.set()
                elif event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    state.apply_event(kind, event["type"], obj)
                else:
                    log.debug("ignoring %s watch event of type %r", plural, event.get("type"))
                rv = _resource_version(obj) or rv
        except Exception as exc:  # ClusterUnreachable, ApiError, a broken stream: all retried
            # The state (and so the rules) stays as it was: the data plane outlives masters.
            log.warning("watching %s failed (%s); keeping the last rules, retrying in %.1fs",
                        plural, exc, pause)
            await trio.sleep(pause)
            pause = min(pause * 2, RETRY_CAP_S)


def _load_cache(path: str, state: ProxyState) -> bool:
    try:
        with open(path) as f:
            state.restore(json.load(f))
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as exc:
        log.warning("ignoring the proxy cache %s: %s", path, exc)
        return False
    log.info("serving %d services from the cache %s until a master answers",
             len(state.services), path)
    return True


def _write_cache(path: str, snapshot: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(snapshot, f)
    os.replace(tmp, path)  # atomic: a crash never leaves half a cache


async def _keep_cache(path: str, state: ProxyState) -> None:
    version = state.version
    while True:
        version = await state.wait_changed(version)
        try:
            await trio.to_thread.run_sync(_write_cache, path, state.snapshot())
        except OSError as exc:
            log.warning("cannot write the proxy cache %s: %s", path, exc)
        await trio.sleep(CACHE_WRITE_INTERVAL_S)


async def watch_cluster(
    client: Any,
    state: ProxyState,
    *,
    cache_path: str | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep ``state`` equal to the cluster's Services and Endpoints; never returns.

    ``client`` is a :class:`controlplane.client.ApiClient`. Reports started once both have
    been listed, so a proxier started afterwards never programs an empty view over the rules
    of a previous run. With ``cache_path``, the last state seen is kept in that file, and a
    restart while every master is unreachable starts at once from it.
    """
    from_cache = cache_path is not None and _load_cache(cache_path, state)
    async with trio.open_nursery() as nursery:
        events = []
        for plural, kind in WATCHED:
            listed = trio.Event()
            events.append(listed)
            nursery.start_soon(_watch_kind, client, state, plural, kind, listed)
        if cache_path is not None:
            nursery.start_soon(_keep_cache, cache_path, state)
        if not from_cache:
            for listed in events:
                await listed.wait()
        task_status.started()
