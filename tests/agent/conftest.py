"""Fixtures for the edge agent tests.

Docker tests label every container with a node name unique to the test and remove everything
carrying that label afterwards. Node addresses come from 127.0.1.200-249 (local clusters use
127.0.1.1, .2, ...) and host ports from 24000-24499 (this package's share of the machine).
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio

# Addresses for nodes in these tests, away from the low ones `edgectl up` hands out.
_ADDRESSES = itertools.cycle(f"127.0.1.{n}" for n in range(200, 250))
# Host ports these tests may publish or listen on (see the test brief).
_PORTS = itertools.cycle(range(24000 + (os.getpid() % 50) * 10, 24500))


def pod(name: str, *, uid: str | None = None, namespace: str = "default",
        restart_policy: str | None = None, grace: int | None = None,
        node_name: str = "", **container: Any) -> dict[str, Any]:
    """A bound pod with one container `web` running the demo image unless overridden."""
    c: dict[str, Any] = {"name": "web", "image": "edgeplane/demo:latest",
                         "imagePullPolicy": "IfNotPresent",
                         "ports": [{"containerPort": 80, "protocol": "TCP"}]}
    c.update(container)
    spec: dict[str, Any] = {"containers": [c], "nodeName": node_name}
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace,
                         "uid": uid or str(uuid.uuid4())},
            "spec": spec}


async def wait_for(predicate: Callable[[], Any], timeout: float, what: str,
                   interval: float = 0.05) -> Any:
    """Poll `predicate` until truthy (returned) or fail after `timeout` seconds."""
    with trio.move_on_after(timeout):
        while True:
            value = predicate()
            if value:
                return value
            await trio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def node_address() -> str:
    return next(_ADDRESSES)


@pytest.fixture
def free_port() -> Callable[[], int]:
    return lambda: next(_PORTS)


@pytest.fixture
def node_name() -> Iterator[str]:
    """A unique node name; every Docker container labelled with it is removed afterwards."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    try:
        import docker
    except ImportError:
        return
    try:
        client = docker.from_env(timeout=30)
        for c in client.containers.list(all=True, filters={"label": f"io.edgeplane.node={name}"}):
            c.remove(force=True)
        client.close()
    except docker.errors.DockerException:
        pass


@pytest.fixture(scope="session")
def demo_image() -> str:
    from cli._image import build_demo_image

    return build_demo_image()
