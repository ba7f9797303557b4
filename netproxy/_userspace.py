"""userspace mode: a trio TCP and UDP balancer on every ``VIP:port`` and node port.

Used without root or without nftables. Every service address gets a listener; a new
connection goes to the next ready endpoint in round-robin order, and an endpoint that refuses
(or does not answer within :data:`CONNECT_TIMEOUT_S`) is skipped for the next one, so a client
sees no error while any endpoint is up. An endpoint that accepts a connection and closes it
at once without answering (Docker's port proxy does this for a pod that just died) is treated
as refusing too: the bytes the client sent so far are replayed to the next endpoint (see
:data:`REPLAY_WINDOW_S`). Endpoint changes only swap the list the next connection is chosen
from: established connections are never touched by them.

Several agents on one machine (a local cluster) share 127/8, so each VIP:port may be claimed by
all of them. Exactly one listener serves each address: listeners bind *without* SO_REUSEPORT,
so the second proxier's bind fails with EADDRINUSE. It then stands by, retrying the bind every
:data:`STANDBY_RETRY_S`, and takes over when the serving proxier goes away. (SO_REUSEPORT would
let the kernel spread connections over all of them, but a proxier with a stale view of the
endpoints would keep getting a share of the traffic; one owner is simpler to reason about.)
"""

from __future__ import annotations

import errno
import logging
import socket as _stdlib_socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio

from ._model import Backend, ServiceEntry

log = logging.getLogger(__name__)

# Loopback and LAN endpoints answer in well under a millisecond; a second is a dead host.
CONNECT_TIMEOUT_S = 1.0
# How often a standby proxier retries a bind another proxier holds: the takeover delay.
STANDBY_RETRY_S = 0.25
# An endpoint that refused is tried last for this long, so each new connection does not pay
# for a refused attempt first; it is still tried if nothing else answers.
REFUSED_MEMORY_S = 5.0
# A UDP "connection" (client address -> backend socket) is forgotten after this much silence,
# like conntrack's UDP stream timeout.
UDP_SESSION_IDLE_S = 30.0
# An endpoint that closes a connection this soon after accepting it, before answering, is
# treated as refusing and the connection is replayed elsewhere; a real answer takes longer
# only on a dying endpoint, and later closes are the application's own business.
REPLAY_WINDOW_S = 0.5
# Bytes of a client's opening message kept for such a replay (a request, not an upload).
REPLAY_LIMIT = 65536
# Large enough for any UDP datagram and a good TCP read size.
BUFFER_SIZE = 65536
# Kernel's default somaxconn; a burst of connects must not be refused by a short backlog.
LISTEN_BACKLOG = 4096


@dataclass
class _Balancer:
    """Chooses endpoints for one service port; shared by its VIP and node-port listeners."""

    entry: ServiceEntry
    _next: int = 0
    _affinity: dict[str, tuple[Backend, float]] = field(default_factory=dict)
    _refused: dict[Backend, float] = field(default_factory=dict)

    def update(self, entry: ServiceEntry) -> None:
        self.entry = entry
        live = set(entry.backends)
        # A client pinned to an endpoint that left is re-balanced on its next connection.
        self._affinity = {c: v for c, v in self._affinity.items() if v[0] in live}
        if entry.affinity_timeout is None:
            self._affinity.clear()

    def candidates(self, client_ip: str) -> list[Backend]:
        """Endpoints to try in order: the pinned one, then round-robin, refusers last."""
        backends = self.entry.backends
        if not backends:
            return []
        now = trio.current_time()
        start = self._next % len(backends)
        order = list(backends[start:] + backends[:start])
        order.sort(key=lambda b: self._refused.get(b, 0.0) > now)  # stable: keeps RR order
        pinned = self._affinity.get(client_ip)
        if pinned is not None and pinned[1] > now and pinned[0] in order:
            order.remove(pinned[0])
            order.insert(0, pinned[0])
        else:
            # Only a fresh choice takes a turn, so pinned clients do not skew the rotation.
            self._next = start + 1
        return order

    def connected(self, client_ip: str, backend: Backend) -> None:
        self._refused.pop(backend, None)
        if self.entry.affinity_timeout is not None:
            self._affinity[client_ip] = (backend, trio.current_time() + self.entry.affinity_timeout)

    def forget(self, client_ip: str, backend: Backend) -> None:
        if self._affinity.get(client_ip, (None,))[0] == backend:
            del self._affinity[client_ip]

    def refused(self, backend: Backend) -> None:
        self._refused[backend] = trio.current_time() + REFUSED_MEMORY_S


@dataclass
class _Listener:
    balancer: _Balancer
    scope: trio.CancelScope
    state: str = "starting"  # "serving" | "standby" | "error"


async def _bind(
    sock: trio.socket.SocketType,
    address: tuple[str, int],
    listener: _Listener,
    task_status: trio.TaskStatus[None],
) -> trio.TaskStatus[None]:
    """Bind, standing by while another process serves the address.

    Reports started once standing by, so a sync returns when every address is either served
    or known to be served by someone else; returns the status still to report (ignored if done).
    """
    while True:
        try:
            await sock.bind(address)
            return task_status
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                if listener.state != "standby":
                    log.info("%s:%d is served by another proxier; standing by", *address)
                listener.state = "standby"
            else:
                # e.g. EADDRNOTAVAIL: a configured node address is not on this machine (yet).
                if listener.state != "error":
                    log.warning("cannot listen on %s:%d: %s", *address, exc)
                listener.state = "error"
            task_status.started()
            task_status = trio.TASK_STATUS_IGNORED
            await trio.sleep(STANDBY_RETRY_S)


def _reset(stream: trio.SocketStream) -> None:
    # SO_LINGER 0 makes close() send RST: the client learns at once that nothing serves it,
    # as it would from an nftables reject.
    try:
        stream.socket.setsockopt(
            _stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
    except OSError:
        pass


async def _connect(backend: Backend) -> trio.SocketStream:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    try:
        with trio.fail_after(CONNECT_TIMEOUT_S):
            await sock.connect((backend.ip, backend.port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


@dataclass
class _Relay:
    """What a client connection sent, kept until an endpoint has answered, for a replay."""

    buffer: bytearray = field(default_factory=bytearray)
    replayable: bool = True  # False once an endpoint answered or the buffer outgrew the cap
    client_eof: bool = False


async def _relay(client: trio.SocketStream, upstream: trio.SocketStream, relay: _Relay) -> bool:
    """Copy both ways until both sides are done; True if the endpoint closed without answering.

    An endpoint that accepts and at once closes without a byte (Docker's port proxy for a pod
    that just died does this) counts as refused: the caller replays the buffered bytes to the
    next endpoint instead of handing the client an empty answer.
    """
    window_end = trio.current_time() + REPLAY_WINDOW_S
    silent = False

    def closed_silently() -> bool:
        return relay.replayable and trio.current_time() < window_end

    async with trio.open_nursery() as nursery:

        async def to_client() -> None:
            nonlocal silent
            try:
                while data := await upstream.receive_some(BUFFER_SIZE):
                    relay.replayable = False
                    relay.buffer.clear()
                    await client.send_all(data)
            except _STREAM_ERRORS:
                silent = closed_silently()
                nursery.cancel_scope.cancel()  # a reset on either side ends the connection
                return
            if closed_silently():
                silent = True
                nursery.cancel_scope.cancel()
                return
            try:
                await client.send_eof()  # half-close: the client may still be talking
            except _STREAM_ERRORS:
                nursery.cancel_scope.cancel()

        async def to_upstream() -> None:
            if relay.client_eof:
                return
            while True:
                try:
                    data = await client.receive_some(BUFFER_SIZE)
                except _STREAM_ERRORS:
                    nursery.cancel_scope.cancel()
                    return
                if not data:
                    break
                if relay.replayable:
                    if len(relay.buffer) + len(data) <= REPLAY_LIMIT:
                        relay.buffer += data
                    else:
                        relay.replayable = False
                        relay.buffer.clear()
                try:
                    await upstream.send_all(data)
                except _STREAM_ERRORS:
                    return  # the endpoint went away: to_client sees it and decides
            relay.client_eof = True
            try:
                await upstream.send_eof()
            except _STREAM_ERRORS:
                pass

        nursery.start_soon(to_client)
        nursery.start_soon(to_upstream)
    return silent


async def _handle_tcp(balancer: _Balancer, client: trio.SocketStream) -> None:
    try:
        client_ip = client.socket.getpeername()[0]
    except OSError:
        await client.aclose()
        return
    relay = _Relay()
    async with client:
        for backend in balancer.candidates(client_ip):
            try:
                upstream = await _connect(backend)
            except (OSError, trio.TooSlowError):
                balancer.refused(backend)
                continue
            async with upstream:
                try:
                    if relay.buffer:
                        await upstream.send_all(relay.buffer)  # replay to the next endpoint
                    if relay.client_eof:
                        await upstream.send_eof()
                except _STREAM_ERRORS:
                    balancer.refused(backend)
                    continue
                balancer.connected(client_ip, backend)
                if not await _relay(client, upstream, relay):
                    return
            log.debug("%s closed without answering; trying the next endpoint", backend)
            balancer.refused(backend)
            balancer.forget(client_ip, backend)
        # No endpoint accepted (or none answered): reset, so the client fails at once.
        _reset(client)


async def _serve_tcp(
    address: tuple[str, int], listener: _Listener, task_status: trio.TaskStatus[None]
) -> None:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    with sock:
        # SO_REUSEADDR only lets us rebind over TIME_WAIT leftovers; on Linux it does not let
        # two live listeners share the address (that is SO_REUSEPORT), so EADDRINUSE still
        # tells a second proxier that the address is served.
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
        task_status = await _bind(sock, address, listener, task_status)
        sock.listen(LISTEN_BACKLOG)
        listener.state = "serving"
        task_status.started()
        log.debug("serving %s:%d/tcp for %s", *address, listener.balancer.entry.key)
        async with trio.open_nursery() as nursery:
            socket_listener = trio.SocketListener(sock)
            while True:
                try:
                    stream = await socket_listener.accept()
                except OSError as exc:  # EMFILE and friends: back off instead of spinning
                    log.warning("accept on %s:%d: %s", *address, exc)
                    await trio.sleep(0.1)
                    continue
                nursery.start_soon(_handle_tcp, listener.balancer, stream)


@dataclass
class _UdpSession:
    backend: Backend
    sock: trio.socket.SocketType
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


async def _udp_replies(
    session: _UdpSession,
    listen_sock: trio.socket.SocketType,
    client: tuple[str, int],
    balancer: _Balancer,
    sessions: dict[tuple[str, int], _UdpSession],
) -> None:
    with session.scope, session.sock:
        session.scope.deadline = trio.current_time() + UDP_SESSION_IDLE_S
        try:
            while True:
                data = await session.sock.recv(BUFFER_SIZE)
                session.scope.deadline = trio.current_time() + UDP_SESSION_IDLE_S
                await listen_sock.sendto(data, client)
        except ConnectionRefusedError:
            # ICMP port unreachable: the endpoint is gone; the client's next datagram starts a
            # new session on the next endpoint.
            balancer.refused(session.backend)
        except OSError as exc:
            log.debug("udp session %s -> %s ended: %s", client, session.backend, exc)
    if sessions.get(client) is session:
        del sessions[client]


async def _serve_udp(
    address: tuple[str, int], listener: _Listener, task_status: trio.TaskStatus[None]
) -> None:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with sock:
        # No SO_REUSEADDR here: for UDP on Linux it *would* let a second proxier bind too.
        task_status = await _bind(sock, address, listener, task_status)
        listener.state = "serving"
        task_status.started()
        sessions: dict[tuple[str, int], _UdpSession] = {}
        async with trio.open_nursery() as nursery:
            while True:
                try:
                    data, client = await sock.recvfrom(BUFFER_SIZE)
                except OSError as exc:
                    log.debug("udp recv on %s:%d: %s", *address, exc)
                    continue
                session = sessions.get(client)
                if session is None:
                    session = await _open_udp_session(listener.balancer, client[0])
                    if session is None:
                        continue  # no endpoint: drop, as the kernel would with no listener
                    sessions[client] = session
                    nursery.start_soon(_udp_replies, session, sock, client, listener.balancer, sessions)
                session.scope.deadline = trio.current_time() + UDP_SESSION_IDLE_S
                try:
                    await session.sock.send(data)
                except OSError:
                    listener.balancer.refused(session.backend)
                    session.scope.cancel()
                    sessions.pop(client, None)


async def _open_udp_session(balancer: _Balancer, client_ip: str) -> _UdpSession | None:
    for backend in balancer.candidates(client_ip):
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        try:
            await sock.connect((backend.ip, backend.port))
        except OSError:
            sock.close()
            balancer.refused(backend)
            continue
        balancer.connected(client_ip, backend)
        return _UdpSession(backend, sock)
    return None


ListenKey = tuple[str, int, str]  # (address, port, "TCP" | "UDP")


class UserspaceProxier:
    """Runs listeners for service entries inside ``nursery``; :meth:`sync` reconciles them."""

    mode = "userspace"

    def __init__(self, nursery: trio.Nursery, node_addresses: Sequence[str] = ()) -> None:
        self._nursery = nursery
        self.node_addresses = list(node_addresses)
        self._balancers: dict[tuple[str, str], _Balancer] = {}
        self._listeners: dict[ListenKey, _Listener] = {}

    def listener_states(self) -> dict[ListenKey, str]:
        """``serving``, ``standby`` (another proxier holds it) or ``error`` per address."""
        return {key: listener.state for key, listener in self._listeners.items()}

    async def sync(self, entries: Sequence[ServiceEntry]) -> None:
        wanted: dict[ListenKey, _Balancer] = {}
        balancers: dict[tuple[str, str], _Balancer] = {}
        for entry in entries:
            bkey = (entry.key, entry.protocol)
            balancer = self._balancers.get(bkey)
            if balancer is None:
                balancer = _Balancer(entry)
            else:
                balancer.update(entry)
            balancers[bkey] = balancer
            addresses = [(entry.vip, entry.port)] if entry.vip is not None else []
            if entry.node_port is not None:
                addresses += [(a, entry.node_port) for a in self.node_addresses]
            for addr, port in addresses:
                key = (addr, port, entry.protocol)
                if key in wanted:
                    log.warning("%s: %s:%d is already served by another service", entry.key, addr, port)
                    continue
                wanted[key] = balancer
        self._balancers = balancers
        for key in list(self._listeners):
            if key not in wanted or self._listeners[key].balancer is not wanted[key]:
                # Removing a service closes its listener and its connections.
                self._listeners.pop(key).scope.cancel()
        for key, balancer in wanted.items():
            if key not in self._listeners:
                listener = _Listener(balancer, trio.CancelScope())
                self._listeners[key] = listener
                await self._nursery.start(self._run_listener, key, listener)

    async def _run_listener(
        self, key: ListenKey, listener: _Listener, task_status: trio.TaskStatus[None]
    ) -> None:
        addr, port, protocol = key
        serve = _serve_tcp if protocol == "TCP" else _serve_udp
        with listener.scope:
            await serve((addr, port), listener, task_status)

    async def remove(self) -> None:
        for listener in self._listeners.values():
            listener.scope.cancel()
        self._listeners.clear()
        self._balancers.clear()
