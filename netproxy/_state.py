"""ProxyState: the proxier's view of Services and Endpoints, fed by whoever watches them.

The agent (or the standalone watcher in ``_watch.py``) pushes whole snapshots or single watch
events in; the proxier waits for :meth:`ProxyState.wait_changed` and re-renders. Several pushes
between two syncs coalesce into one sync because the proxier only reads the latest state.
Nothing here is ever cleared because the control plane went away: the last state stays, and so
do the rules built from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import trio

from ._model import ServiceEntry, desired_entries


def _key(obj: Mapping) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "default", meta.get("name") or "")


class ProxyState:
    """Latest Services and Endpoints; bumps :attr:`version` on every change."""

    def __init__(
        self,
        services: Iterable[Mapping] = (),
        endpoints: Iterable[Mapping] = (),
    ) -> None:
        self._services: dict[tuple[str, str], Mapping] = {_key(s): s for s in services}
        self._endpoints: dict[tuple[str, str], Mapping] = {_key(e): e for e in endpoints}
        self.version = 0
        self._changed = trio.Event()

    # -- writers ---------------------------------------------------------------------------
    def set_services(self, services: Iterable[Mapping]) -> None:
        """Replace every Service (a list result, or a re-list after 410 Gone)."""
        self._services = {_key(s): s for s in services}
        self._bump()

    def set_endpoints(self, endpoints: Iterable[Mapping]) -> None:
        """Replace every Endpoints object."""
        self._endpoints = {_key(e): e for e in endpoints}
        self._bump()

    def apply_event(self, kind: str, event_type: str, obj: Mapping) -> None:
        """Apply one watch event: kind "Service" or "Endpoints"; type ADDED/MODIFIED/DELETED."""
        if kind == "Service":
            table = self._services
        elif kind == "Endpoints":
            table = self._endpoints
        else:
            raise ValueError(f"ProxyState only holds Service and Endpoints, not {kind!r}")
        if event_type in ("ADDED", "MODIFIED"):
            table[_key(obj)] = obj
        elif event_type == "DELETED":
            table.pop(_key(obj), None)
        else:
            raise ValueError(f"unknown watch event type {event_type!r}")
        self._bump()

    # -- readers ---------------------------------------------------------------------------
    @property
    def services(self) -> list[Mapping]:
        return list(self._services.values())

    @property
    def endpoints(self) -> list[Mapping]:
        return list(self._endpoints.values())

    def snapshot(self) -> dict:
        """Everything held, as a JSON-able dict (for an on-disk cache)."""
        return {"services": self.services, "endpoints": self.endpoints}

    def restore(self, snapshot: Mapping) -> None:
        """Replace everything with a :meth:`snapshot`; raises ValueError if it is not one."""
        services, endpoints = snapshot.get("services"), snapshot.get("endpoints")
        if not isinstance(services, list) or not isinstance(endpoints, list):
            raise ValueError("not a ProxyState snapshot (needs 'services' and 'endpoints' lists)")
        self._services = {_key(s): s for s in services if isinstance(s, Mapping)}
        self._endpoints = {_key(e): e for e in endpoints if isinstance(e, Mapping)}
        self._bump()

    def entries(self) -> list[ServiceEntry]:
        """The desired data plane for the current state."""
        return desired_entries(self._services.values(), self._endpoints.values())

    async def wait_changed(self, seen_version: int) -> int:
        """Return the current version as soon as it differs from ``seen_version``."""
        while self.version == seen_version:
            await self._changed.wait()
        return self.version

    def _bump(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = trio.Event()
