"""HollowRuntime: a SIMULATED container runtime for scale tests (nothing is run).

Containers are records whose state flips to "running" at once; pod IPs come from TEST-NET-2
(198.51.100.0/24, RFC 5737: documentation addresses, never routed) and host ports from a counter,
so a hollow node looks like a real one to the control plane while costing a few hundred bytes
per pod. Tests can make a container exit with `HollowRuntime.kill`.

Like Docker it reports container changes as events (`follow_events`): its containers change only
through its own methods, so every change is known, and the pod syncer need not relist the node's
containers on every round (a pod's start woke a round that listed, sorted and grouped all ~30
containers of its node).
"""

from __future__ import annotations

import itertools
import time
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import trio

from ._runtime import ContainerInfo, ContainerSpec, ImagePullError

# RFC 5737 documentation range: clearly fake and never routed anywhere.
HOLLOW_POD_NET = "198.51.100"
# First simulated host port; the range real Docker uses for ephemeral publishing.
HOLLOW_FIRST_PORT = 32768


class HollowRuntime:
    """Simulated runtime. `simulated` is True: probes succeed without running anything."""

    simulated = True
    scheme = "hollow"

    def __init__(self, node_name: str, *, missing_images: frozenset[str] = frozenset(),
                 unreachable_images: frozenset[str] = frozenset()) -> None:
        self.node_name = node_name
        # Images that "do not exist" (pulls fail), so pull-failure paths can be exercised.
        self.missing_images = set(missing_images)
        # Images present locally whose registry cannot be reached (pulls fail).
        self.unreachable_images = set(unreachable_images)
        self._containers: dict[str, ContainerInfo] = {}
        self._ids = itertools.count(1)
        self._ports = itertools.count(HOLLOW_FIRST_PORT)
        self._followers: list[Callable[[str], None]] = []

    async def follow_events(self, on_connected: Callable[[], None],
                            on_event: Callable[[str], None]) -> None:
        """Say `on_event(id)` for every container that exits or is removed, until cancelled
        (what Docker's events are to the syncer; a start needs none: its caller records it)."""
        self._followers.append(on_event)
        try:
            on_connected()
            await trio.sleep_forever()
        finally:
            self._followers.remove(on_event)

    def _changed(self, container_id: str) -> None:
        for on_event in list(self._followers):
            on_event(container_id)

    async def list_containers(self) -> list[ContainerInfo]:
        await trio.lowlevel.checkpoint()
        return list(self._containers.values())

    def _image_id(self, image: str) -> str | None:
        if image in self.missing_images:
            return None
        return f"sha256:{zlib.crc32(image.encode()):064x}"

    # image_id and start_container, the two calls of every container start, do not yield to
    # the scheduler: they only look up and record in memory, and each pass through trio's
    # scheduler costs a runner of hundreds of nodes more than the call itself.
    async def image_id(self, image: str) -> str | None:
        return self._image_id(image)

    async def pull_image(self, image: str) -> str:
        await trio.lowlevel.checkpoint()
        if image in self.missing_images or image in self.unreachable_images:
            raise ImagePullError(f'failed to pull image "{image}": simulated pull failure')
        found = self._image_id(image)
        assert found is not None
        return found

    async def start_container(self, spec: ContainerSpec) -> ContainerInfo:
        n = next(self._ids)
        cid = f"{n:064x}"
        now = time.time()
        info = ContainerInfo(
            id=cid, pod_namespace=spec.pod_namespace, pod_name=spec.pod_name,
            pod_uid=spec.pod_uid, container_name=spec.container_name,
            restart_count=spec.restart_count, grace_seconds=spec.grace_seconds,
            image=spec.image, image_id=self._image_id(spec.image) or "",
            state="running", started_at=now, created_at=now,
            ip=f"{HOLLOW_POD_NET}.{n % 254 + 1}",
            host_ports={f"{p.container_port}/{p.protocol}": p.host_port or next(self._ports)
                        for p in spec.ports},
        )
        self._containers[cid] = info
        return info

    def kill(self, container_id: str, exit_code: int = 137) -> None:
        """Make a simulated container exit (what `docker kill` is to the real runtime)."""
        info = self._containers[container_id]
        self._containers[container_id] = replace(info, state="exited", exit_code=exit_code,
                                                 finished_at=time.time())
        self._changed(container_id)

    async def stop_container(self, container_id: str, grace_seconds: int) -> None:
        await trio.lowlevel.checkpoint()
        if container_id in self._containers and self._containers[container_id].running:
            self.kill(container_id, 0)

    async def remove_container(self, container_id: str) -> None:
        await trio.lowlevel.checkpoint()
        if self._containers.pop(container_id, None) is not None:
            self._changed(container_id)

    async def exec_in(self, container_id: str, command: list[str],
                      timeout: float) -> tuple[int, bytes]:
        await trio.lowlevel.checkpoint()
        return 0, b""

    async def logs(self, container_id: str, *, follow: bool, tail: int | None,
                   timestamps: bool = False) -> AsyncIterator[bytes]:
        await trio.lowlevel.checkpoint()
        yield b"hollow container: no logs (simulated runtime)\n"

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
