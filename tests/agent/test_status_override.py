"""A pod status someone else overrode (the node controller marks a lost node's pods NotReady)
is written back by the agent once it sees the change; otherwise it would stay NotReady forever,
since the agent only writes statuses that changed on its side."""

from __future__ import annotations

from typing import Any

import trio

from .conftest import pod
from .test_api import config, get, hollow_agent, masters, wait_for_async


def _ready(p: dict[str, Any] | None) -> str | None:
    for c in ((p or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status")
    return None


async def test_agent_restores_a_readiness_the_node_controller_overrode(node_name, node_address,
                                                                       tmp_path):
    async with trio.open_nursery() as nursery:
        [m] = await masters(nursery, 1)
        cfg = config(node_name, node_address, tmp_path, [m.url])
        await hollow_agent(nursery, cfg)
        await m.registry.create("pods", "default", pod("h-1", node_name=node_name))

        async def ready() -> dict[str, Any] | None:
            p = await get(m.registry, "pods", "default", "h-1")
            return p if _ready(p) == "True" else None

        p = await wait_for_async(ready, 10, "h-1 Ready")
        # What the node lifecycle controller writes for a node whose Lease went silent.
        conds = [c for c in p["status"]["conditions"] if c["type"] != "Ready"]
        conds.append({"type": "Ready", "status": "False", "reason": "NodeUnreachable",
                      "message": "node is unreachable", "lastProbeTime": None,
                      "lastTransitionTime": "2026-01-01T00:00:00Z"})
        p["status"]["conditions"] = conds
        overridden = await m.registry.update_status("pods", "default", "h-1", p)
        assert _ready(overridden) == "False"
        back = await wait_for_async(ready, 10, "h-1 Ready again (written back by the agent)")
        assert back["status"]["phase"] == "Running"
        nursery.cancel_scope.cancel()


def test_rfc3339_remembers_only_the_same_second() -> None:
    """The one-entry cache of the formatted second gives strftime's text for every time,
    including the same second again, the next one, and times before the epoch."""
    import random
    import time as _time

    from edge_agent._status import rfc3339

    times = [0.0, 0.999, 1.0, -0.5, -1.0, 1e9 + 0.3, 1e9 + 0.7, 1e9 + 1.0, 1764176000.99999]
    times += [random.uniform(-1e9, 2e9) for _ in range(2000)]
    for ts in times:
        assert rfc3339(ts) == _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime(ts)), ts
    assert rfc3339(None) is None


def test_resource_quantities_are_parsed_once_and_bad_ones_still_refused() -> None:
    from fractions import Fraction

    import pytest

    from edge_agent._podspec import PodConfigError, _quantity, _resources

    assert _resources({"resources": {"limits": {"cpu": "500m", "memory": "64Mi"},
                                     "requests": {"cpu": "10m"}}}) == (
        500_000_000, 64 * 1024 * 1024, 10)
    assert _quantity("10m") is _quantity("10m") == Fraction(1, 100)
    assert _quantity(2) == 2  # a JSON number is parsed, not remembered
    for bad in ("ten", True, ["1"]):
        with pytest.raises(PodConfigError):
            _resources({"resources": {"limits": {"cpu": bad}}})
