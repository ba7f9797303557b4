"""DockerRuntime: the ContainerRuntime over the Docker Engine API (docker SDK).

The SDK is blocking, so every call runs in a worker thread (`trio.to_thread.run_sync`) under a
capacity limiter; the trio loop never waits on the socket. Listing is one `GET /containers/json`
per relist; a container is inspected only when it is new or its state changed, which keeps the
idle cost of a node with many pods to that one call.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, TypeVar

import trio

from ._runtime import (
    LABEL_CONTAINER_NAME,
    LABEL_GRACE,
    LABEL_NODE,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    LABEL_RESTART_COUNT,
    ContainerInfo,
    ContainerRuntimeError,
    ContainerSpec,
    ContainerStartError,
    EventsUnsupported,
    ImagePullError,
)

T = TypeVar("T")

# Concurrent short Docker calls (create/start/inspect/list); enough to start a node's pods in
# parallel without flooding a small engine.
DOCKER_THREADS = 8
# Container creations/starts in flight at once: the engine serializes much of the work
# (network namespace, iptables, proxy); more parallel starts only make every pod late together.
START_CONCURRENCY = 3
# `docker stop` blocks for up to the grace period; stops get their own threads so a slow
# shutdown never delays starting other pods.
STOP_THREADS = 16
# Followed log streams hold a thread each while idle.
LOG_THREADS = 16
# How long an image found present is believed without asking again: a burst of pod starts
# needs one inspect, and an image removed meanwhile is noticed within seconds (the create then
# fails with ErrImageNeverPull/ImageNotFound and is retried as any start failure).
IMAGE_CACHE_S = 5.0
# Docker Engine API 1.41 = Docker 20.10 (Debian 12's docker.io); newer engines still serve it.
DOCKER_API_VERSION = "1.41"
# Default HTTP timeout of the SDK (seconds) for ordinary calls.
DOCKER_TIMEOUT = 60
# Engine events that change what a relist shows for one of our containers: an exit (crash,
# `docker kill`, OOM), a removal (`docker rm`), a start the agent did not make (`docker start`).
WATCHED_EVENTS = ("start", "die", "oom", "destroy")
# How far back a new events subscription asks the engine to replay: the engine subscribes a
# client only after answering it, so an event in between would be lost. Replayed events cost a
# relist at most.
EVENTS_REPLAY_S = 1.0


def _parse_ts(text: str | None) -> float | None:
    """Docker's RFC 3339 timestamps (nanoseconds, 'Z'); the zero time means 'never'."""
    if not text or text.startswith("0001-"):
        return None
    text = text.rstrip("Z")
    if "." in text:
        head, frac = text.split(".", 1)
        frac = "".join(ch for ch in frac if ch.isdigit())[:6]
        text = f"{head}.{frac}"
    try:
        return datetime.fromisoformat(text + "+00:00").timestamp()
    except ValueError:
        return None


def _split_image(image: str) -> tuple[str, str | None]:
    """'repo[:tag][@digest]' -> (repo, tag-or-digest) as docker's pull API wants them."""
    if "@" in image:
        repo, digest = image.split("@", 1)
        return repo, digest
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = image.rsplit(":", 1)
        return repo, tag
    return image, "latest"


class DockerRuntime:
    """Containers on the local Docker engine, labelled with `node_name`."""

    simulated = False
    scheme = "docker"

    def __init__(self, node_name: str, *, base_url: str | None = None) -> None:
        import docker  # imported here: the hollow runtime and the unit tests do not need it

        self.node_name = node_name
        # A fixed API version: the client then does not ask the engine at construction, so an
        # agent starting while Docker is down still comes up (and retries) instead of failing.
        options = {"timeout": DOCKER_TIMEOUT, "version": DOCKER_API_VERSION,
                   "max_pool_size": STOP_THREADS + DOCKER_THREADS}
        if base_url:
            self._client = docker.DockerClient(base_url=base_url, **options)
        else:
            self._client = docker.from_env(**options)
        self._api = self._client.api
        # No proxy or .netrc lookups from the environment on every call (a quarter of the
        # client's CPU per call): the engine's socket is never reached through a proxy.
        self._api.trust_env = False
        self._errors = docker.errors
        self._limiter = trio.CapacityLimiter(DOCKER_THREADS)
        self._start_gate = trio.Semaphore(START_CONCURRENCY)
        self._stop_limiter = trio.CapacityLimiter(STOP_THREADS)
        self._log_limiter = trio.CapacityLimiter(LOG_THREADS)
        self._images: dict[str, tuple[float, str]] = {}  # image -> (when found, image ID)
        # id -> (summary State, ContainerInfo): re-inspect only on change.
        self._cache: dict[str, tuple[str, ContainerInfo]] = {}
        # Containers created by start_container whose start has not returned yet. The engine
        # holds a container's lock while starting it, so inspecting one blocks until its start
        # is done: a relist that did so held up every other pod of the node behind that start.
        self._starting: set[str] = set()
        # Containers an engine event named since they were last inspected: the next relist
        # inspects them whatever the list says. The engine emits "die" before it updates the
        # view that `GET /containers/json` reads, so a list made at once may still say
        # "running"; an inspect waits for the container's lock, i.e. for the exit to be done.
        self._changed: set[str] = set()
        # Where to follow the engine's events (a plain HTTP stream read by trio itself, so
        # cancelling it leaves no thread behind): (unix socket path or None, base URL), or None
        # for an engine reached over TLS (the agent then relists every second instead).
        from docker.utils import parse_host

        host = base_url or os.environ.get("DOCKER_HOST")
        tls = not base_url and bool(os.environ.get("DOCKER_TLS_VERIFY"))
        parsed = parse_host(host, False, tls=tls)
        self._events_target: tuple[str | None, str] | None = None
        if parsed.startswith("http+unix://"):
            self._events_target = (parsed.removeprefix("http+unix://"), "http://docker")
        elif parsed.startswith("http://"):
            self._events_target = (None, parsed)

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs),
                                             limiter=self._limiter)

    async def version(self) -> str:
        info = await self._call(self._api.version)
        return str(info.get("Version", "unknown"))

    # ---- listing -------------------------------------------------------------------------

    def _info_from_inspect(self, data: dict[str, Any]) -> ContainerInfo:
        cfg = data.get("Config") or {}
        labels = cfg.get("Labels") or {}
        state = data.get("State") or {}
        net = data.get("NetworkSettings") or {}
        host_ports: dict[str, int] = {}
        for key, bindings in (net.get("Ports") or {}).items():
            if not bindings:
                continue
            port, _, proto = key.partition("/")
            host_ports[f"{port}/{proto.upper() or 'TCP'}"] = int(bindings[0]["HostPort"])
        status = state.get("Status") or "created"
        if status in ("restarting", "paused"):
            status = "running"
        elif status in ("removing", "dead"):
            status = "exited"
        exit_code = state.get("ExitCode") if status == "exited" else None
        return ContainerInfo(
            id=data["Id"],
            pod_namespace=labels.get(LABEL_POD_NAMESPACE, ""),
            pod_name=labels.get(LABEL_POD_NAME, ""),
            pod_uid=labels.get(LABEL_POD_UID, ""),
            container_name=labels.get(LABEL_CONTAINER_NAME, ""),
            restart_count=int(labels.get(LABEL_RESTART_COUNT, "0") or 0),
            grace_seconds=int(labels.get(LABEL_GRACE, "30") or 30),
            image=cfg.get("Image", ""),
            image_id=data.get("Image", ""),
            state=status,
            exit_code=exit_code,
            started_at=_parse_ts(state.get("StartedAt")),
            finished_at=_parse_ts(state.get("FinishedAt")) if status == "exited" else None,
            oom_killed=bool(state.get("OOMKilled")),
            error=state.get("Error") or "",
            ip=net.get("IPAddress") or "",
            host_ports=host_ports,
            created_at=_parse_ts(data.get("Created")) or 0.0,
        )

    async def list_containers(self) -> list[ContainerInfo]:
        summaries = await self._call(self._api.containers, all=True,
                                     filters={"label": [f"{LABEL_NODE}={self.node_name}"]})
        result: list[ContainerInfo] = []
        seen: set[str] = set()
        for s in summaries:
            cid = s["Id"]
            seen.add(cid)
            if cid in self._starting:
                continue
            cached = self._cache.get(cid)
            if cached is not None and cached[0] == s.get("State") and cid not in self._changed:
                result.append(cached[1])
                continue
            self._changed.discard(cid)  # (an event during the inspect adds it again)
            try:
                data = await self._call(self._api.inspect_container, cid)
            except self._errors.NotFound:
                continue
            info = self._info_from_inspect(data)
            # A container in transition is re-inspected next time rather than cached half-way.
            self._cache[cid] = (s.get("State") if info.state != "created" else "", info)
            result.append(info)
        for cid in list(self._cache):
            if cid not in seen:
                del self._cache[cid]
        self._changed &= seen
        return result

    # ---- events --------------------------------------------------------------------------

    async def follow_events(self, on_connected: Callable[[], None],
                            on_event: Callable[[str], None]) -> None:
        """Follow the engine's events for this node's containers (see ContainerRuntime)."""
        if self._events_target is None:
            raise EventsUnsupported("following the events of an engine reached over TLS is "
                                    "not supported")
        import httpx  # already loaded by the probes; not needed by hollow nodes

        uds, base = self._events_target
        filters = json.dumps({"type": ["container"], "event": list(WATCHED_EVENTS),
                              "label": [f"{LABEL_NODE}={self.node_name}"]})
        params = {"filters": filters, "since": f"{time.time() - EVENTS_REPLAY_S:.3f}"}
        # verify=False: no CA bundle loaded for a connection that never uses TLS.
        transport = httpx.AsyncHTTPTransport(uds=uds, verify=False)
        try:
            async with httpx.AsyncClient(
                    transport=transport, base_url=base, trust_env=False,
                    timeout=httpx.Timeout(DOCKER_TIMEOUT, read=None)) as client:
                async with client.stream("GET", f"/v{DOCKER_API_VERSION}/events",
                                         params=params) as resp:
                    if resp.status_code != 200:
                        body = (await resp.aread()).decode(errors="replace")[:200]
                        raise ContainerRuntimeError(
                            f"engine refused the events stream: HTTP {resp.status_code} {body}")
                    on_connected()
                    async for line in resp.aiter_lines():
                        cid = self._event_container(line)
                        if cid is not None:
                            on_event(cid)
        except httpx.HTTPError as exc:
            raise ContainerRuntimeError(f"events stream: {type(exc).__name__}: {exc}") from exc

    def _event_container(self, line: str) -> str | None:
        """The container an event line concerns, or None when it changes nothing we know."""
        try:
            event = json.loads(line)
        except ValueError:
            return None
        if not isinstance(event, dict):
            return None
        cid = event.get("id") or (event.get("Actor") or {}).get("ID")
        if not isinstance(cid, str) or not cid:
            return None
        if (event.get("Action") or event.get("status")) == "start":
            # Our own starts: the starter already reports the container (no relist needed).
            cached = self._cache.get(cid)
            if cid in self._starting or (cached is not None and cached[1].running):
                return None
        self._changed.add(cid)
        return cid

    # ---- images --------------------------------------------------------------------------

    async def image_id(self, image: str) -> str | None:
        # A burst of pod starts asks about the same image once per container: answer from a
        # short-lived cache of images found (a missing image is always asked again).
        hit = self._images.get(image)
        if hit is not None and time.monotonic() - hit[0] < IMAGE_CACHE_S:
            return hit[1]
        try:
            data = await self._call(self._api.inspect_image, image)
        except self._errors.NotFound:  # ImageNotFound is one
            self._images.pop(image, None)
            return None
        self._images[image] = (time.monotonic(), str(data["Id"]))
        return str(data["Id"])

    async def pull_image(self, image: str) -> str:
        repo, tag = _split_image(image)
        try:
            await trio.to_thread.run_sync(
                functools.partial(self._api.pull, repo, tag=tag), limiter=self._stop_limiter)
        except self._errors.DockerException as exc:
            raise ImagePullError(f'failed to pull image "{image}": {exc}') from exc
        self._images.pop(image, None)  # a pull may have moved the tag to a new image
        found = await self.image_id(image)
        if found is None:
            raise ImagePullError(f'image "{image}" is not present after pulling')
        return found

    # ---- lifecycle -----------------------------------------------------------------------

    def _create(self, spec: ContainerSpec) -> str:
        api = self._api
        port_bindings: dict[str, tuple[str, int | None] | tuple[str]] = {}
        exposed: list[tuple[int, str]] = []
        # Host network: nothing to publish (the container's ports are the node's ports).
        for p in () if spec.host_network else spec.ports:
            proto = p.protocol.lower()
            exposed.append((p.container_port, proto))
            port_bindings[f"{p.container_port}/{proto}"] = (
                (p.host_ip, p.host_port) if p.host_port else (p.host_ip,))
        host_config = api.create_host_config(
            port_bindings=port_bindings or None,
            nano_cpus=spec.nano_cpus,
            mem_limit=spec.mem_limit,
            cpu_shares=spec.cpu_shares,
            network_mode="host" if spec.host_network else None,
        )
        name = (f"ep_{spec.container_name}_{spec.pod_name}_{spec.pod_namespace}_"
                f"{spec.pod_uid[:8]}_{spec.restart_count}")
        created = api.create_container(
            image=spec.image,
            # Kubernetes' command replaces the image's ENTRYPOINT, args its CMD.
            entrypoint=spec.command if spec.command else None,
            command=spec.args if spec.args is not None else None,
            environment=spec.env,
            working_dir=spec.working_dir,
            hostname=spec.hostname[:63] or None,
            labels=spec.labels(),
            ports=exposed or None,
            host_config=host_config,
            name=name,
            tty=spec.tty,
            stdin_open=spec.stdin,
        )
        return str(created["Id"])

    async def start_container(self, spec: ContainerSpec) -> ContainerInfo:
        async with self._start_gate:
            return await self._start_container(spec)

    async def _start_container(self, spec: ContainerSpec) -> ContainerInfo:
        try:
            cid = await self._call(self._create, spec)
        except self._errors.ImageNotFound as exc:
            raise ContainerStartError("ErrImageNeverPull", str(exc)) from exc
        except self._errors.APIError as exc:
            if exc.status_code == 409:
                # A container of this name exists (an earlier attempt that failed half-way).
                await self._remove_by_name(spec)
            raise ContainerStartError("CreateContainerError", exc.explanation or str(exc)) from exc
        except self._errors.DockerException as exc:
            raise ContainerStartError("CreateContainerError", str(exc)) from exc
        self._starting.add(cid)
        try:
            try:
                await self._call(self._api.start, cid)
            except self._errors.DockerException as exc:
                message = getattr(exc, "explanation", None) or str(exc)
                await self.remove_container(cid)
                raise ContainerStartError("RunContainerError", message) from exc
            data = await self._call(self._api.inspect_container, cid)
        finally:
            self._starting.discard(cid)
        info = self._info_from_inspect(data)
        state = (data.get("State") or {}).get("Status") or ""
        if state == "running":
            # The next relist finds it unchanged and need not inspect it again.
            self._cache[cid] = (state, info)
        return info

    async def _remove_by_name(self, spec: ContainerSpec) -> None:
        name = (f"ep_{spec.container_name}_{spec.pod_name}_{spec.pod_namespace}_"
                f"{spec.pod_uid[:8]}_{spec.restart_count}")
        await self.remove_container(name)

    async def stop_container(self, container_id: str, grace_seconds: int) -> None:
        try:
            await trio.to_thread.run_sync(
                functools.partial(self._api.stop, container_id, timeout=max(0, grace_seconds)),
                limiter=self._stop_limiter)
        except self._errors.NotFound:
            pass
        except self._errors.APIError as exc:
            # Already stopped / being removed: the goal (not running) is met.
            if exc.status_code not in (304, 409):
                raise

    async def remove_container(self, container_id: str) -> None:
        try:
            await self._call(self._api.remove_container, container_id, force=True)
        except self._errors.NotFound:
            pass
        except self._errors.APIError as exc:
            if exc.status_code != 409:  # removal already in progress
                raise
        self._cache.pop(container_id, None)

    async def exec_in(self, container_id: str, command: list[str],
                      timeout: float) -> tuple[int, bytes]:
        def run() -> tuple[int, bytes]:
            ex = self._api.exec_create(container_id, command, stdout=True, stderr=True)
            out = self._api.exec_start(ex["Id"])
            code = self._api.exec_inspect(ex["Id"]).get("ExitCode")
            return (code if code is not None else -1), out

        with trio.move_on_after(timeout):
            try:
                return await trio.to_thread.run_sync(run, limiter=self._limiter,
                                                     abandon_on_cancel=True)
            except self._errors.DockerException as exc:
                return -1, str(exc).encode()
        return -1, b"timed out"

    async def logs(self, container_id: str, *, follow: bool, tail: int | None,
                   timestamps: bool = False) -> AsyncIterator[bytes]:
        stream = await self._call(self._api.logs, container_id, stream=True, follow=follow,
                                  tail=tail if tail is not None else "all",
                                  timestamps=timestamps)

        def next_chunk() -> bytes | None:
            try:
                return next(stream)
            except StopIteration:
                return None
            except Exception:  # the stream was closed under us (cancelled)
                return None

        try:
            while True:
                chunk = await trio.to_thread.run_sync(next_chunk, limiter=self._log_limiter,
                                                      abandon_on_cancel=True)
                if chunk is None:
                    return
                yield chunk
        finally:
            # Unblocks an abandoned thread still waiting for the next line.
            stream.close()

    async def aclose(self) -> None:
        self._client.close()
