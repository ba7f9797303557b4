"""Liveness, readiness and startup probes (httpGet, tcpSocket, exec), with Kubernetes' semantics.

One trio task per (container, probe). Results are kept here and the pod syncer is woken when a
result flips: readiness feeds the Ready condition, a liveness or startup failure marks the
container unhealthy and the syncer kills it (then restarts it per restartPolicy). Liveness and
readiness wait for the startup probe to pass. A simulated runtime's containers pass every probe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from ._podspec import Probe, probe_of
from ._runtime import ContainerInfo, ContainerRuntime
from ._status import ProbeState

log = logging.getLogger("edge_agent.probes")

# The kubelet's User-Agent for HTTP probes; servers sometimes special-case it.
PROBE_USER_AGENT = "kube-probe/1.30 (edgeplane)"


@dataclass(slots=True)
class _Entry:
    # One per probe loop of the container (a CancelScope serves a single `with` block).
    scopes: list[trio.CancelScope]
    has_readiness: bool
    has_startup: bool
    ready: bool = False
    started: bool = False
    started_event: trio.Event = field(default_factory=trio.Event)
    # Set once liveness/startup failed: the grace period to kill with (None: the pod's).
    unhealthy: bool = False
    unhealthy_grace: int | None = None


def _resolve_port(port: Any, container: dict[str, Any]) -> int:
    if isinstance(port, int):
        return port
    text = str(port)
    if text.isdigit():
        return int(text)
    for p in container.get("ports") or []:
        if p.get("name") == text:
            return int(p["containerPort"])
    raise ValueError(f"named port {text!r} is not declared by the container")


class ProbeManager:
    """Runs the probes of running containers and remembers their results."""

    def __init__(self, runtime: ContainerRuntime, wake: Callable[[], None]) -> None:
        self._runtime = runtime
        self._wake = wake
        self._entries: dict[str, _Entry] = {}
        self._nursery: trio.Nursery | None = None
        self._http: httpx.AsyncClient | None = None

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        """Run until cancelled; probe tasks live in this nursery."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            if self._http is not None:
                with trio.CancelScope(shield=True):
                    await self._http.aclose()

    def _http_client(self) -> httpx.AsyncClient:
        # Created on the first HTTP probe: most pods (and every hollow node) never need one.
        if self._http is None:
            # trust_env=False: probes go to the pod, never through a proxy from the
            # environment; verify=False: the kubelet does not verify HTTPS probes either.
            self._http = httpx.AsyncClient(trust_env=False, verify=False,
                                           follow_redirects=False)
        return self._http

    def track(self, info: ContainerInfo, container: dict[str, Any],
              prior: ProbeState | None = None) -> None:
        """Start probing a running container (idempotent).

        `prior`: the results last reported for this very container (an adopted one, after the
        agent restarted). Starting from them instead of "not ready" keeps a restarting agent
        from flapping its pods out of their Services; the probes then carry on as usual.
        """
        if info.id in self._entries or self._nursery is None:
            return
        liveness = probe_of(container, "livenessProbe")
        readiness = probe_of(container, "readinessProbe")
        startup = probe_of(container, "startupProbe")
        entry = _Entry(scopes=[], has_readiness=readiness is not None,
                       has_startup=startup is not None)
        if startup is None or (prior is not None and prior.started):
            entry.started = True
            entry.started_event.set()
            startup = None
        if readiness is None:
            entry.ready = True
        elif prior is not None:
            entry.ready = prior.ready
        self._entries[info.id] = entry
        if self._runtime.simulated:
            entry.ready = entry.started = True
            entry.started_event.set()
            return
        for which, probe in (("startup", startup), ("liveness", liveness),
                             ("readiness", readiness)):
            if probe is not None:
                self._nursery.start_soon(self._loop, info, container, which, probe, entry)

    def forget(self, container_id: str) -> None:
        entry = self._entries.pop(container_id, None)
        if entry is not None:
            for scope in entry.scopes:
                scope.cancel()

    def forget_all_but(self, keep: set[str]) -> None:
        for cid in list(self._entries):
            if cid not in keep:
                self.forget(cid)

    def tracked(self) -> set[str]:
        """IDs of the containers being probed (or known ready without a probe)."""
        return set(self._entries)

    def state(self, container_id: str) -> ProbeState:
        entry = self._entries.get(container_id)
        if entry is None:
            return ProbeState(ready=False, started=False)
        return ProbeState(ready=entry.ready, started=entry.started)

    def unhealthy(self) -> dict[str, int | None]:
        return {cid: e.unhealthy_grace for cid, e in self._entries.items() if e.unhealthy}

    async def _loop(self, info: ContainerInfo, container: dict[str, Any], which: str,
                    probe: Probe, entry: _Entry) -> None:
        if self._entries.get(info.id) is not entry:
            return  # forgotten before this task got to run
        scope = trio.CancelScope()
        entry.scopes.append(scope)
        with scope:
            if which != "startup":
                await entry.started_event.wait()
            await trio.sleep(probe.initial_delay)
            successes = failures = 0
            while True:
                ok, detail = await self.run_probe(probe, info, container)
                if ok:
                    successes, failures = successes + 1, 0
                else:
                    successes, failures = 0, failures + 1
                    log.debug("%s probe of %s/%s failed: %s", which, info.pod_name,
                              info.container_name, detail)
                if which == "readiness":
                    if ok and successes >= probe.success_threshold and not entry.ready:
                        entry.ready = True
                        self._wake()
                    elif not ok and failures >= probe.failure_threshold and entry.ready:
                        entry.ready = False
                        self._wake()
                elif which == "startup" and ok:
                    entry.started = True
                    entry.started_event.set()
                    self._wake()
                    return
                elif not ok and failures >= probe.failure_threshold:  # liveness or startup
                    log.info("%s probe of %s/%s failed %d times (%s): restarting",
                             which, info.pod_name, info.container_name, failures, detail)
                    entry.unhealthy = True
                    entry.unhealthy_grace = probe.grace_seconds
                    self._wake()
                    return
                await trio.sleep(probe.period)

    async def run_probe(self, probe: Probe, info: ContainerInfo,
                        container: dict[str, Any]) -> tuple[bool, str]:
        """One probe attempt: (success, detail)."""
        h = probe.handler
        try:
            if probe.kind == "exec":
                command = [str(c) for c in h.get("command") or []]
                if not command:
                    return False, "exec probe without a command"
                code, out = await self._runtime.exec_in(info.id, command, probe.timeout)
                return code == 0, f"exit code {code}: {out[-200:]!r}"
            host = h.get("host") or info.ip
            port = _resolve_port(h.get("port"), container)
            if probe.kind == "tcpSocket":
                with trio.move_on_after(probe.timeout):
                    stream = await trio.open_tcp_stream(host, port)
                    await stream.aclose()
                    return True, "connected"
                return False, f"tcp connect to {host}:{port} timed out"
            if probe.kind == "httpGet":
                scheme = str(h.get("scheme") or "HTTP").lower()
                path = str(h.get("path") or "/")
                if not path.startswith("/"):
                    path = "/" + path
                headers = {"User-Agent": PROBE_USER_AGENT}
                for hdr in h.get("httpHeaders") or []:
                    headers[str(hdr.get("name"))] = str(hdr.get("value", ""))
                bracketed = f"[{host}]" if ":" in host else host
                resp = await self._http_client().get(f"{scheme}://{bracketed}:{port}{path}",
                                            headers=headers, timeout=probe.timeout)
                return 200 <= resp.status_code < 400, f"HTTP {resp.status_code}"
            return False, f"{probe.kind} probes are not supported by this agent"
        except (OSError, httpx.HTTPError, ValueError) as exc:
            return False, f"{type(exc).__name__}: {exc}"
