"""serve_proxy: keep this node's data plane equal to the latest Services and Endpoints."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from typing import Protocol

import trio

from ._model import ServiceEntry
from ._nftables import (
    DEFAULT_TABLE,
    NftablesError,
    NftablesProxier,
    nft_available,
    valid_table_name,
)
from ._state import ProxyState
from ._userspace import UserspaceProxier

log = logging.getLogger(__name__)

MODES = ("auto", "nftables", "userspace")
# After a failed sync (nft refused, a netlink hiccup) retry this soon even without a change.
SYNC_RETRY_S = 1.0


class _Proxier(Protocol):
    mode: str

    async def sync(self, entries: Sequence[ServiceEntry]) -> None: ...

    async def remove(self) -> None: ...


class ProxyError(Exception):
    """The requested mode cannot run here (bad name, or nftables without root/nft)."""


def choose_mode(mode: str) -> str:
    """Resolve ``auto`` and check that the requested mode can run on this machine."""
    if mode not in MODES:
        raise ProxyError(f"unknown proxy mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "userspace":
        return mode
    available = nft_available()
    if mode == "nftables" and not available:
        raise ProxyError("nftables mode needs root and a working `nft` (use --mode userspace)")
    return "nftables" if available else "userspace"


class ProxyHandle:
    """What :func:`serve_proxy` hands to ``task_status.started``: mode and sync progress."""

    def __init__(self, mode: str, state: ProxyState, proxier: _Proxier) -> None:
        self.mode = mode
        self.state = state
        self.proxier = proxier
        self.synced_version = -1  # state version the data plane reflects
        self.entries: list[ServiceEntry] = []
        self.last_error: str | None = None
        self.syncs = 0  # times the data plane was actually reprogrammed
        self._synced = trio.Event()

    async def wait_synced(self, version: int | None = None) -> None:
        """Wait until the data plane reflects ``version`` (default: the current state)."""
        target = self.state.version if version is None else version
        while self.synced_version < target:
            await self._synced.wait()

    def _mark(self, version: int) -> None:
        self.synced_version = version
        self._synced.set()
        self._synced = trio.Event()


async def _feed(source: AsyncIterable[tuple[Iterable[Mapping], Iterable[Mapping]]], state: ProxyState) -> None:
    try:
        async for services, endpoints in source:
            state.set_services(services)
            state.set_endpoints(endpoints)
    except Exception:
        # The data plane never depends on the control plane: keep the last state and rules.
        log.exception("service/endpoints source failed; keeping the last rules")


async def serve_proxy(
    source: ProxyState | AsyncIterable[tuple[Iterable[Mapping], Iterable[Mapping]]],
    *,
    mode: str = "auto",
    node_addresses: Sequence[str] = (),
    table: str = DEFAULT_TABLE,
    localnet_interfaces: Sequence[str] = ("docker0",),
    task_status: trio.TaskStatus[ProxyHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Program this node from ``source`` until cancelled; never returns otherwise.

    ``source`` is a :class:`ProxyState` someone pushes into (the agent's watch), or an async
    iterable of ``(services, endpoints)`` snapshots. Changes are applied within milliseconds;
    bursts coalesce into one sync. A failed sync is logged and retried; when the source stops
    (control plane unreachable) the last rules stay in place. On cancellation the node is
    cleaned up: the nftables table is deleted, or the userspace listeners are closed.
    Raises :class:`ProxyError` at once if ``mode`` cannot run here.

    ``node_addresses``: where NodePorts answer (this node's hostIP). ``table``: the nftables
    table to own; agents sharing a machine pass one each (``edgeplane-<node>``) so one agent's
    shutdown never removes another's rules. ``localnet_interfaces``: container-facing
    interfaces whose traffic may be DNATed to 127/8 endpoints (route_localnet is set on them).
    """
    mode = choose_mode(mode)
    if not valid_table_name(table):
        raise ProxyError(f"invalid nftables table name {table!r} (letters, digits, '-', '_')")
    state = source if isinstance(source, ProxyState) else ProxyState()
    async with trio.open_nursery() as nursery:
        if not isinstance(source, ProxyState):
            nursery.start_soon(_feed, source, state)
        proxier: _Proxier
        if mode == "nftables":
            proxier = NftablesProxier(
                node_addresses, table=table, localnet_interfaces=localnet_interfaces
            )
        else:
            proxier = UserspaceProxier(nursery, node_addresses)
        handle = ProxyHandle(mode, state, proxier)
        try:
            first = True
            while True:
                version = state.version
                entries = state.entries()
                try:
                    # Re-applying identical rules is skipped, except the first time (on start
                    # the table left by an earlier run is always replaced) and after a failure.
                    if first or handle.last_error is not None or entries != handle.entries:
                        await proxier.sync(entries)
                        handle.syncs += 1
                    handle.entries, handle.last_error = entries, None
                    handle._mark(version)
                except (NftablesError, OSError) as exc:
                    handle.last_error = str(exc)
                    log.error("%s sync failed (keeping the previous rules): %s", mode, exc)
                if first:
                    first = False
                    log.info("netproxy serving in %s mode", mode)
                    task_status.started(handle)
                if handle.last_error is None:
                    await state.wait_changed(version)
                else:
                    with trio.move_on_after(SYNC_RETRY_S):
                        await state.wait_changed(version)
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await proxier.remove()
                except (NftablesError, OSError) as exc:
                    log.error("cleaning up the %s data plane failed: %s", mode, exc)
            nursery.cancel_scope.cancel()
