"""RaftStore: the trio-facing Store over one pysyncobj :class:`~raftstore._replica.Replica`.

Group commit. Writes are queued on the trio thread. When fewer than ``max_in_flight``
proposals are in flight, everything queued in the current scheduler pass is proposed at once
(one command alone, or one ``batch`` command); while proposals are in flight, new commands
accumulate and leave as one batch when a proposal completes. An idle store therefore sends a
write immediately (pysyncobj runs with ``appendEntriesUseBatch=False``; while the tick thread
sleeps, ``propose`` forwards or appends the command on this thread under the tick lock, else it
wakes the tick thread through a pipe), and a loaded one sends few large log entries: both
latency and throughput, with no polling. Followers work the same way: pysyncobj forwards the batch to the leader.

Results come back on the tick thread and are handed to trio with ``TrioToken.run_sync_soon``;
the tick thread never blocks on trio. A command submitted with a ``direct`` callback (the
client port's replies) that is proposed alone is answered on the tick thread itself as soon as
it is applied: the hand-off to the trio thread (a wake-up and the GIL, 50-500 us here) then
follows the answer instead of preceding it.

Failures. A proposal that provably did not reach the log (no leader yet, the contacted node
was not the leader, or a new leader overwrote its slot) is retried until the operation's
deadline. A proposal whose fate is unknown (the leader changed before it acknowledged, or the
deadline passed) raises :class:`StoreUnavailable` with ``maybe_committed=True``.

Reads. ``linearizable=True`` (the default): a leader holding its quorum lease that has applied
an entry of its own term answers from local state. A follower asks the leader for its commit
index (ReadIndex; the leader answers only under its lease) and waits until it has applied that
far: first with one UDP datagram each way, sent and read by the reading task itself, answered
by the leader's responder thread (see raftstore._readindex: no tick thread on either side);
without an answer, over the Raft connections, where concurrent reads share the round trip. Otherwise (no leader, no answer) the read waits for
a read barrier, a ``noop`` that rides the next proposal (a batch with writes needs none), so
concurrent reads share one round through Raft. ``linearizable=False`` reads the local, possibly stale, state.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._commands import encode_batch, encode_delete, encode_noop, encode_put, encode_txn
from ._readindex import MAX_DATAGRAM, udp_endpoint
from ._replica import (
    _TRANSFER_CATCH_UP_TIMEOUTS,
    _TRANSFER_ELECTION_TIMEOUTS,
    FAIL_REASON,
    Replica,
    ReplicaConfig,
    check_address,
)
from ._types import (
    Compare,
    Event,
    InvalidCommand,
    KeyValue,
    RangeResult,
    StoreError,
    StoreUnavailable,
    TxnResult,
)

__all__ = ["RaftStore", "open_raft_store"]

logger = logging.getLogger("raftstore.bridge")

# Enough to cover a leader election (<= ~1.5 s) plus a retry, short enough that a client
# talking to a replica cut off from the majority hears about it promptly.
DEFAULT_OP_TIMEOUT_S = 5.0
# Proposals in flight before new commands wait to be batched: 2 overlaps one batch's
# replication with the next one's forwarding without splitting the load into tiny entries.
DEFAULT_MAX_IN_FLIGHT = 2
# Caps of one batch: bounds a log entry (pysyncobj pickles and encrypts it whole) to well
# under a megabyte, so one batch never stalls the tick thread for long.
MAX_BATCH_COMMANDS = 4096
MAX_BATCH_BYTES = 512 * 1024
# Largest command (or txn_many group) accepted: etcd's default request limit is 1.5 MiB, and
# pysyncobj must never see a log entry near its 8 MiB frame setting (appendEntriesBatchSizeBytes),
# above which it switches to a chunked transfer that can cut an entry short.
MAX_COMMAND_BYTES = 4 * 1024 * 1024
# Pause before retrying a proposal that certainly did not commit (no leader / wrong node).
_RETRY_DELAY_S = 0.02
# How often a Raft leader re-checks its lease for leadership() (a quarter of the lease).
_LEASE_POLL_FRACTION = 0.25
# The tick thread must get the GIL promptly when a peer's reply arrives while trio is busy:
# Python's default 5 ms switch interval would show up directly in write latency under load.
_SWITCH_INTERVAL_S = 0.0005
# Fail codes meaning "certainly not in the log": safe to retry.
_SAFE_RETRY = frozenset(
    {
        FAIL_REASON.QUEUE_FULL,
        FAIL_REASON.MISSING_LEADER,
        FAIL_REASON.DISCARDED,
        FAIL_REASON.NOT_LEADER,
        FAIL_REASON.REQUEST_DENIED,
    }
)
# Our own code for a proposal that got no answer before its deadline.
_TIMED_OUT = -1
_CLOSED = -2
_FAIL_NAMES = {
    FAIL_REASON.QUEUE_FULL: "queue full",
    FAIL_REASON.MISSING_LEADER: "no leader",
    FAIL_REASON.DISCARDED: "discarded by a new leader",
    FAIL_REASON.NOT_LEADER: "not the leader",
    FAIL_REASON.LEADER_CHANGED: "leader changed before the write was acknowledged",
    FAIL_REASON.REQUEST_DENIED: "request denied",
    FAIL_REASON.UNKNOWN_OUTCOME: "unknown outcome",
    _TIMED_OUT: "timed out",
    _CLOSED: "store closed",
}
_NOOP = encode_noop()
# How long a follower waits for the leader's UDP read-index answer before it asks again over
# TCP (raftstore._readindex): far above a loaded leader's usual answer (p99 < 0.1 s measured),
# so a timeout means a lost datagram, a stalled leader or UDP filtered, not ordinary load.
_UDP_READ_TIMEOUT_S = 0.5
# Timeouts in a row, with no answer for _UDP_READ_SILENCE_S (longer than a stalled leader
# keeps its lease), after which UDP read points are not tried for _UDP_READ_PAUSE_S: where UDP
# is filtered between masters, a read a minute pays the timeout instead of every read.
_UDP_READ_TIMEOUTS_TO_PAUSE = 3
_UDP_READ_SILENCE_S = 2.0
_UDP_READ_PAUSE_S = 60.0

Waiter = Callable[[Any, "int | None"], None]
# Called on the tick thread with a successful result; must be quick and thread-safe.
Direct = Callable[[Any], None]


class _AsyncWaiter:
    """Receives one proposal outcome on the trio thread and wakes the awaiting task."""

    __slots__ = ("event", "result", "fail")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.result: Any = None
        self.fail: int | None = None

    def __call__(self, result: Any, fail: int | None) -> None:
        self.result = result
        self.fail = fail
        self.event.set()


class _Proposal:
    __slots__ = ("items", "barriers", "batch", "started", "direct", "answered")

    def __init__(
        self, items: list[Any], barriers: list[Waiter], batch: bool, direct: Direct | None
    ) -> None:
        self.items = items
        self.barriers = barriers
        self.batch = batch
        self.started = time.monotonic()
        # Set for a lone command whose submitter can take its result on the tick thread.
        self.direct = direct
        # Whoever answers the waiters first sets it, under RaftStore._answer_lock: the tick
        # thread (direct) or the trio thread (result, failure, expiry, close).
        self.answered = False


def _unavailable(fail: int, what: str) -> StoreUnavailable:
    maybe = fail not in _SAFE_RETRY
    reason = _FAIL_NAMES.get(fail, f"pysyncobj failure {fail}")
    if maybe:
        msg = f"{what}: {reason}; it may or may not have been applied"
    else:
        msg = f"{what}: {reason}; nothing was applied"
    return StoreUnavailable(msg, maybe_committed=maybe)


class RaftStore:
    """The replicated Store (see ``raftstore.Store``). Create with :meth:`open` or
    :func:`open_raft_store`; all methods must be called from the trio thread that opened it."""

    def __init__(
        self,
        config: ReplicaConfig,
        *,
        name: str | None = None,
        names: dict[str, str] | None = None,
        op_timeout: float = DEFAULT_OP_TIMEOUT_S,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        self.config = config
        # This replica's own (ip, port) for UDP read points (None: not an IPv4 literal).
        self._udp_self = udp_endpoint(config.self_address)
        self.name = name or config.self_address
        self._names = dict(names or {})
        self._names.setdefault(config.self_address, self.name)
        self._op_timeout = op_timeout
        self._max_in_flight = max(1, max_in_flight)
        self._replica: Replica | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        # Group commit state (trio thread only).
        # (cmd or [cmds], waiter, group, direct callback or None)
        self._pending: list[tuple[Any, Waiter, bool, Direct | None]] = []
        self._pending_barriers: list[Waiter] = []
        self._in_flight: dict[int, _Proposal] = {}
        self._next_pid = 0
        self._flush_scheduled = False
        self._closed = False
        self._answer_lock = threading.Lock()
        # Wake-ups from the tick thread, coalesced to one pending callback each.
        self._wake_pending = False
        self._rev_changed = trio.Event()
        # Running watch() iterators. With none, applies do not wake the trio thread at all
        # (each wake-up costs ~60 us of CPU here, on every replica, for every write).
        self._watchers = 0
        self._state_changed = trio.Event()
        # ReadIndex over UDP (trio thread only; see _udp_read_point): reads whose read point
        # this replica has not applied yet, as (index, waiter); timeouts in a row, the last
        # answer's time, and until when UDP is not tried.
        self._ri_applying: list[tuple[int, _AsyncWaiter]] = []
        self._ri_timeouts = 0
        self._ri_last_answer = 0.0
        self._ri_paused_until = 0.0
        # Read points taken per way (status()): over UDP, over TCP, UDP requests timed out.
        self.read_points = {"udp": 0, "tcp": 0, "udp_timeouts": 0}

    # --- lifecycle ------------------------------------------------------------------------------

    @classmethod
    async def open(cls, config: ReplicaConfig, **kwargs: Any) -> RaftStore:
        """Bind the replica's address, load its journal and snapshot, and start ticking."""
        store = cls(config, **kwargs)
        store._token = trio.lowlevel.current_trio_token()
        if sys.getswitchinterval() > _SWITCH_INTERVAL_S:
            sys.setswitchinterval(_SWITCH_INTERVAL_S)  # process-wide; see the constant
        store._replica = await trio.to_thread.run_sync(
            functools.partial(
                Replica,
                config,
                on_applied=store._applied_from_tick,
                on_state_changed=store._state_from_tick,
                applied_urgent=store._reads_wait_for_apply,
            )
        )
        store._replica.start()
        # Serve nothing before the snapshot and journal are loaded (the first tick, once the
        # replica's address is bound): a restarted master would otherwise answer stale reads,
        # and fill its watch cache, from an empty state.
        await trio.to_thread.run_sync(store._replica.loaded.wait, abandon_on_cancel=True)
        return store

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._fail_everything(_CLOSED)
        self._wake_watchers()  # they see _closed and raise
        self._wake_leadership()
        if self._replica is not None:
            await trio.to_thread.run_sync(self._replica.stop)

    @property
    def replica(self) -> Replica:
        if self._replica is None:
            raise StoreUnavailable("the store is not open")
        return self._replica

    # --- tick thread -> trio --------------------------------------------------------------------

    def _call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self._token.run_sync_soon(fn, *args)  # type: ignore[union-attr]
        except trio.RunFinishedError:
            pass  # trio is gone; nobody is waiting any more

    def _applied_from_tick(self) -> None:
        # A watcher counted before it reads the state: either it sees this apply's result, or
        # it is counted here and woken. The same for a read waiting to apply (_ri_applying).
        if (self._watchers or self._ri_applying) and not self._wake_pending:
            self._wake_pending = True
            self._call_soon(self._wake_watchers)

    def _reads_wait_for_apply(self) -> bool:
        # (tick thread) Linearizable reads wait for this replica's apply: announce it at once.
        return bool(self._ri_applying)

    def _wake_watchers(self) -> None:
        self._wake_pending = False
        event, self._rev_changed = self._rev_changed, trio.Event()
        event.set()
        if self._ri_applying:
            self._ri_check_applied()

    def _state_from_tick(self) -> None:
        self._call_soon(self._wake_leadership)

    def _wake_leadership(self) -> None:
        event, self._state_changed = self._state_changed, trio.Event()
        event.set()

    def _result_from_tick(self, pid: int, proposal: _Proposal, result: Any, fail: int) -> None:
        direct = proposal.direct
        if direct is not None and fail == FAIL_REASON.SUCCESS and self._claim(proposal):
            direct(result)
            # The trio thread drops answered proposals from _in_flight when it next submits
            # (_reap_answered), so it need not wake for this one unless commands wait for the
            # slot. No lost wake-up: a submit appends to _pending before it reaps, this thread
            # marks the proposal answered (in _claim) before it looks at _pending.
            if not (self._pending or self._pending_barriers):
                return
        self._call_soon(self._complete, pid, result, fail)

    def _claim(self, proposal: _Proposal) -> bool:
        """True for the one caller (of either thread) that is to answer the proposal."""
        with self._answer_lock:
            if proposal.answered:
                return False
            proposal.answered = True
            return True

    # --- group commit ---------------------------------------------------------------------------

    def submit(
        self, command: Any, waiter: Waiter, *, group: bool = False, direct: Direct | None = None
    ) -> None:
        """Queue an encoded command (or, with ``group``, a list applied in one log entry).

        ``waiter(result, fail)`` is called on the trio thread: fail is None on success (the
        result may be a StoreError instance for a rejected command), else a failure code.
        Or, instead of the waiter and only on success, ``direct(result)`` on the tick thread
        (when the command is proposed alone): it must be quick and thread-safe.
        """
        if self._closed:
            waiter(None, _CLOSED)
            return
        self._pending.append((command, waiter, group, direct))
        self._schedule_flush()

    def submit_barrier(self, waiter: Waiter) -> None:
        """Call ``waiter(None, None)`` once a log entry proposed after this call is applied."""
        if self._closed:
            waiter(None, _CLOSED)
            return
        self._pending_barriers.append(waiter)
        self._schedule_flush()

    def submit_read_barrier(self, waiter: Waiter, *, udp: bool = True) -> None:
        """Call ``waiter(None, None)`` at a linearizable read point: on a follower by ReadIndex
        (one round trip to the leader: over UDP first unless ``udp`` is false or UDP is paused,
        else over the Raft connections), else, or if that gets no answer, by
        :meth:`submit_barrier`."""
        replica = self._replica
        if self._closed or replica is None:
            waiter(None, _CLOSED)
        elif replica.is_raft_leader:
            self.submit_barrier(waiter)
        elif udp and self._ri_paused_until <= trio.current_time() and replica.leader_read_endpoint():
            trio.lowlevel.spawn_system_task(self._udp_read_barrier, waiter)
        else:
            self._read_index_tcp(replica, waiter)

    def _read_index_tcp(self, replica: Replica, waiter: Waiter) -> None:
        self.read_points["tcp"] += 1
        replica.read_index(lambda ok: self._call_soon(self._read_answered, waiter, ok))

    def _read_answered(self, waiter: Waiter, ok: bool) -> None:
        if ok:
            waiter(None, None)
        else:
            self.submit_barrier(waiter)

    # --- ReadIndex over UDP (raftstore._readindex) ----------------------------------------------

    async def _udp_read_point(self) -> bool:
        """Take a read point from the leader over UDP and wait until this replica has applied
        that far. True: linearizable reads may use the local state now. False: no read point
        this way (no leader known, not IPv4, UDP paused, refused, timed out): use the TCP round.

        The calling task waits on a socket of its own, so the answer wakes it directly: with
        one socket read by another task, a loaded event loop added a scheduling pass (p99 15-19
        ms at 400 nodes / 12,000 pods) between the answer and the read."""
        replica = self.replica
        now = trio.current_time()
        if now < self._ri_paused_until:
            return False
        endpoint = replica.leader_read_endpoint()
        own = self._udp_self
        if endpoint is None or own is None:
            return False
        codec = replica.read_index_codec
        nonce = os.urandom(8)
        index: int | None = -1  # -1: no answer yet; None: refused
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.bind((own[0], 0))  # the answer comes back to (and filters see) our address
                sock.sendto(codec.request(nonce), endpoint)
                with trio.move_on_after(_UDP_READ_TIMEOUT_S):
                    while index == -1:
                        await trio.lowlevel.wait_readable(sock)
                        index = self._udp_answer(sock, codec, nonce, endpoint)
        except OSError as exc:
            logger.warning("read point over UDP failed (%s): using the TCP round", exc)
            self._ri_paused_until = now + _UDP_READ_PAUSE_S
            return False
        if index == -1:
            self._udp_timed_out()
            return False
        self._ri_timeouts = 0
        self._ri_last_answer = trio.current_time()
        if index is None:
            return False  # not the leader (any more), or no lease
        self.read_points["udp"] += 1
        if replica.raftLastApplied >= index:
            return True
        waiter = _AsyncWaiter()
        entry = (index, waiter)
        self._ri_applying.append(entry)
        # The tick thread wakes the trio thread on its next apply while the list is non-empty
        # (_applied_from_tick); an apply that ended before the append is seen here.
        self._ri_check_applied()
        with trio.move_on_after(self.config.raft_max_timeout):
            await waiter.event.wait()
        if not waiter.event.is_set():
            self._ri_applying.remove(entry)
            return False
        return waiter.fail is None

    @staticmethod
    def _udp_answer(
        sock: socket.socket, codec: Any, nonce: bytes, endpoint: tuple[str, int]
    ) -> int | None:
        """The read point in the answer to ``nonce`` if one arrived (None: refused), else -1.
        Anything else is dropped: answers we cannot authenticate, from another address, or to
        another request."""
        while True:
            try:
                data, peer = sock.recvfrom(MAX_DATAGRAM)
            except BlockingIOError:
                return -1
            except ConnectionRefusedError:
                continue  # an ICMP error for a port nobody listens on: the timeout handles it
            answer = codec.open_answer(data)
            if answer is not None and answer[0] == nonce and peer == endpoint:
                return answer[1]

    def _udp_timed_out(self) -> None:
        self._ri_timeouts += 1
        self.read_points["udp_timeouts"] += 1
        now = trio.current_time()
        if (
            self._ri_timeouts >= _UDP_READ_TIMEOUTS_TO_PAUSE
            and now - self._ri_last_answer >= _UDP_READ_SILENCE_S
        ):
            self._ri_timeouts = 0
            self._ri_paused_until = now + _UDP_READ_PAUSE_S
            logger.warning(
                "no UDP read-index answers from the leader: using the TCP round for %.0f s",
                _UDP_READ_PAUSE_S,
            )

    def _ri_check_applied(self) -> None:
        applied = self.replica.raftLastApplied
        waiting = []
        for entry in self._ri_applying:
            if applied >= entry[0]:
                entry[1](None, None)
            else:
                waiting.append(entry)
        self._ri_applying = waiting

    async def _udp_read_barrier(self, waiter: Waiter) -> None:
        # submit_read_barrier's UDP round, for callers that cannot await (the client port).
        try:
            ok = await self._udp_read_point()
        except trio.Cancelled:
            waiter(None, _CLOSED)  # trio is shutting down
            raise
        except Exception:  # a bug must not crash trio (a system task): log it, use TCP
            logger.exception("read point over UDP")
            ok = False
        if ok:
            waiter(None, None)
        elif not self._closed:
            self._read_index_tcp(self.replica, waiter)
        else:
            waiter(None, _CLOSED)

    def _schedule_flush(self) -> None:
        # Idle: propose at once (the latency path). Otherwise defer to the end of this
        # scheduler pass so that commands submitted together (a burst of requests, many tasks
        # woken at once) leave as one entry.
        if self._flush_scheduled:
            return  # _flush runs at the end of this pass and takes this command too
        if self._in_flight:
            self._reap_answered()
        if not self._in_flight:
            self._flush()
            return
        if len(self._in_flight) >= self._max_in_flight:
            # Full: free slots whose answer was lost (e.g. with a dropped connection), or the
            # queue would wait for them forever.
            self._expire_in_flight()
        if len(self._in_flight) < self._max_in_flight:
            self._flush_scheduled = True
            self._token.run_sync_soon(self._flush)  # type: ignore[union-attr]

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._closed:
            return
        self._reap_answered()
        self._expire_in_flight()
        replica = self._replica
        assert replica is not None
        while (self._pending or self._pending_barriers) and len(
            self._in_flight
        ) < self._max_in_flight:
            items, cmds = self._take_batch()
            barriers, self._pending_barriers = self._pending_barriers, []
            direct = None
            if not cmds:
                payload, batch = _NOOP, False
            elif len(items) == 1 and not items[0][2]:
                payload, batch = cmds[0], False
                if not barriers:
                    direct = items[0][3]
            else:
                payload, batch = encode_batch(cmds), True
            self._next_pid += 1
            pid = self._next_pid
            proposal = _Proposal(items, barriers, batch, direct)
            self._in_flight[pid] = proposal
            replica.propose(payload, functools.partial(self._result_from_tick, pid, proposal))

    def _take_batch(self) -> tuple[list[Any], list[bytes]]:
        pending = self._pending
        cmds: list[bytes] = []
        size = 0
        n = 0
        for item in pending:
            command, _, group, _ = item
            add = command if group else (command,)
            add_size = sum(len(c) for c in add)
            if n and (
                len(cmds) + len(add) > MAX_BATCH_COMMANDS or size + add_size > MAX_BATCH_BYTES
            ):
                break
            cmds.extend(add)
            size += add_size
            n += 1
        items = pending[:n]
        del pending[:n]
        return items, cmds

    def _complete(self, pid: int, result: Any, fail: int) -> None:
        proposal = self._in_flight.pop(pid, None)
        if proposal is None or not self._claim(proposal):
            # Expired or closed (its waiters already know), or answered on the tick thread.
            if self._pending or self._pending_barriers:
                self._flush()
            return
        if fail == FAIL_REASON.SUCCESS:
            if not proposal.batch:
                for _, waiter, _, _ in proposal.items:
                    waiter(result, None)
            elif isinstance(result, BaseException):
                for _, waiter, _, _ in proposal.items:
                    waiter(result, None)
            else:
                i = 0
                for command, waiter, group, _ in proposal.items:
                    if group:
                        waiter(result[i : i + len(command)], None)
                        i += len(command)
                    else:
                        waiter(result[i], None)
                        i += 1
            for waiter in proposal.barriers:
                waiter(None, None)
        else:
            _answer(proposal, fail)
        if self._pending or self._pending_barriers:
            self._flush()

    def _reap_answered(self) -> None:
        """Free the slots of proposals answered on the tick thread (see _result_from_tick)."""
        answered = [pid for pid, proposal in self._in_flight.items() if proposal.answered]
        for pid in answered:
            del self._in_flight[pid]

    def _expire_in_flight(self) -> None:
        # A proposal may never be answered (e.g. its forward was lost with a connection);
        # free its slot after the op timeout so the pipeline keeps moving.
        if not self._in_flight:
            return
        limit = time.monotonic() - self._op_timeout
        for pid in [p for p, prop in self._in_flight.items() if prop.started < limit]:
            proposal = self._in_flight.pop(pid)
            if self._claim(proposal):
                _answer(proposal, _TIMED_OUT)

    def expire_unanswered(self) -> None:
        """Answer proposals older than the operation timeout ("timed out", outcome unknown).

        An awaited write has its own deadline; a command handed to :meth:`submit` has none,
        and is otherwise expired only when a later command is proposed. A server that uses
        :meth:`submit` calls this about once a second."""
        if self._in_flight and not self._closed:
            self._flush()  # reaps, expires, and proposes whatever waited for a free slot

    def _fail_everything(self, fail: int) -> None:
        pending, self._pending = self._pending, []
        barriers, self._pending_barriers = self._pending_barriers, []
        in_flight, self._in_flight = self._in_flight, {}
        applying, self._ri_applying = self._ri_applying, []
        for _, read in applying:
            read(None, fail)
        for _, waiter, _, _ in pending:
            waiter(None, fail)
        for waiter in barriers:
            waiter(None, fail)
        for proposal in in_flight.values():
            if self._claim(proposal):
                _answer(proposal, fail)

    # --- writes ---------------------------------------------------------------------------------

    async def _write(self, command: Any, what: str, *, group: bool = False) -> Any:
        size = sum(len(c) for c in command) if group else len(command)
        if size > MAX_COMMAND_BYTES:
            raise InvalidCommand(
                f"{what}: {size} bytes exceeds the {MAX_COMMAND_BYTES} byte limit of one write"
            )
        deadline = trio.current_time() + self._op_timeout
        while True:
            waiter = _AsyncWaiter()
            self.submit(command, waiter, group=group)
            with trio.move_on_at(deadline):
                await waiter.event.wait()
            if not waiter.event.is_set():
                raise _unavailable(_TIMED_OUT, what)
            if waiter.fail is None:
                return waiter.result
            if waiter.fail in _SAFE_RETRY and trio.current_time() + _RETRY_DELAY_S < deadline:
                await trio.sleep(_RETRY_DELAY_S)
                continue
            raise _unavailable(waiter.fail, what)

    async def put(self, key: str, value: bytes) -> tuple[int, KeyValue | None]:
        return _raise_rejected(await self._write(encode_put(key, value), f"put {key!r}"))

    async def delete(self, key: str) -> tuple[int, KeyValue | None]:
        return _raise_rejected(await self._write(encode_delete(key), f"delete {key!r}"))

    async def txn(
        self, compares: list[Compare], success: list[tuple], failure: list[tuple]
    ) -> TxnResult:
        return _raise_rejected(await self._write(encode_txn(compares, success, failure), "txn"))

    async def txn_many(
        self, txns: list[tuple[list[Compare], list[tuple], list[tuple]]]
    ) -> list[TxnResult]:
        if not txns:
            return []
        commands = [encode_txn(c, s, f) for c, s, f in txns]
        results = await self._write(commands, f"{len(commands)} txns", group=True)
        return [_raise_rejected(r) for r in results]

    # --- reads ----------------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self.replica.kv.revision

    @property
    def compact_revision(self) -> int:
        return self.replica.kv.compact_revision

    async def barrier(self) -> int:
        replica = self.replica
        if replica.can_read_locally():
            return replica.kv.revision
        deadline = trio.current_time() + self._op_timeout
        # First a read point (ReadIndex on a follower: over UDP, else over TCP, falling back
        # to the log by itself), then, if that failed, rounds through the log until the deadline.
        submit: Callable[[Waiter], None] = self.submit_read_barrier
        if not replica.is_raft_leader and not self._closed:
            if await self._udp_read_point():
                return replica.kv.revision
            submit = functools.partial(self.submit_read_barrier, udp=False)
        while True:
            waiter = _AsyncWaiter()
            submit(waiter)
            submit = self.submit_barrier
            with trio.move_on_at(deadline):
                await waiter.event.wait()
            if waiter.event.is_set() and waiter.fail is None:
                return replica.kv.revision
            if waiter.event.is_set() and waiter.fail == _CLOSED:
                raise _unavailable(_CLOSED, "read barrier")
            # A barrier has no effect, so any failure is safe to retry.
            if trio.current_time() + _RETRY_DELAY_S >= deadline:
                raise StoreUnavailable(
                    "read barrier: no committed round through Raft before the deadline "
                    "(no leader or no quorum)"
                )
            if waiter.event.is_set():
                await trio.sleep(_RETRY_DELAY_S)

    async def get(self, key: str, *, linearizable: bool = True) -> KeyValue | None:
        if linearizable:
            await self.barrier()
        replica = self.replica
        with replica.state_lock:
            return replica.kv.get(key)

    async def range(
        self,
        prefix: str,
        *,
        limit: int = 0,
        start_after: str | None = None,
        linearizable: bool = True,
    ) -> RangeResult:
        if linearizable:
            await self.barrier()
        replica = self.replica
        with replica.state_lock:
            return replica.kv.range(prefix, limit, start_after)

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Event]]:
        """Events under ``prefix`` from ``start_revision`` on, in batches, forever.

        Raises Compacted when the history no longer reaches back to the next revision wanted
        (at the start, or later if this watcher falls that far behind).
        """
        replica = self.replica
        next_rev = start_revision
        self._watchers += 1
        try:
            while True:
                if self._closed:
                    raise StoreUnavailable("the store was closed")
                changed = self._rev_changed
                with replica.state_lock:
                    kv = replica.kv
                    events = kv.events_since(next_rev, prefix)
                    current = kv.revision
                if events:
                    next_rev = events[-1].revision + 1
                    yield events
                else:
                    next_rev = max(next_rev, current + 1)
                    await changed.wait()
        finally:
            self._watchers -= 1

    def wake_watchers_now(self) -> None:
        """Let the :meth:`watch` iterators see everything applied so far, now.

        The replica announces applies at most every ``ReplicaConfig.apply_notice_s`` (each
        notice wakes this event loop), so a watcher may lag the applied state by that much. A
        reader that waits for a watcher to reach a revision it has read (the API server's
        watch cache) calls this first."""
        if not self._closed:
            self._wake_watchers()

    # --- leadership -----------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self._replica is not None and self._replica.has_lease()

    async def leadership(self) -> AsyncIterator[bool]:
        """Yield is_leader() now, then each time it changes (lease lapses are noticed within a
        quarter of the lease)."""
        replica = self.replica
        poll = self.config.lease_s * _LEASE_POLL_FRACTION
        current = self.is_leader()
        yield current
        while True:
            changed = self._state_changed
            with trio.move_on_after(poll if replica.is_raft_leader else 1.0):
                await changed.wait()
            if self._closed:
                raise StoreUnavailable("the store was closed")
            now = self.is_leader()
            if now != current:
                current = now
                yield now

    async def transfer_leadership(self, to: str | None = None) -> str:
        """Hand the leadership of this (leading) replica to another member -- ``to`` (a Raft
        address), or else the connected member holding the most of the log -- and return the
        new leader's address once this replica follows it.

        Writes and reads issued meanwhile wait and retry as during an election (the leader
        appends nothing while it hands over). Raises :class:`StoreError` when nothing was
        handed over: this replica does not lead, it is the only member, no other member is
        connected, or the target did not catch up in time (then this replica simply goes on
        leading); :class:`StoreUnavailable` when the target was asked to take over but no
        leader was seen in time (this replica stepped down; the members elect one as usual).
        See :meth:`Replica.transfer_leadership`."""
        if to is not None:
            check_address(to, "member address")
        replica = self.replica
        if to == replica.selfNode.address:
            raise StoreError(f"{to} is this replica: leadership can only go to another member")
        done = trio.Event()
        outcome: list[Any] = []

        def answered(address: str | None, why: str | None) -> None:
            outcome.extend((address, why, replica.is_raft_leader))
            done.set()

        replica.transfer_leadership(to, lambda a, w: self._call_soon(answered, a, w))
        # The replica answers within its own deadlines (catch-up, then election); this one
        # only guards against a tick thread that stopped.
        limit = 2 * (_TRANSFER_CATCH_UP_TIMEOUTS + _TRANSFER_ELECTION_TIMEOUTS) * self.config.raft_max_timeout
        with trio.move_on_after(max(limit, self._op_timeout)):
            await done.wait()
        if not done.is_set():
            raise StoreUnavailable("leadership transfer: no answer from the replica in time")
        address, why, still_leads = outcome
        if why is not None:
            if still_leads:  # nothing was handed over: it leads as before
                raise StoreError(f"leadership transfer: {why}")
            raise StoreUnavailable(f"leadership transfer: {why}")
        # Deposed by the target's higher term; the new leader is known from its first
        # append-entries (usually the target, or another member holding the whole log).
        with trio.move_on_after(self._op_timeout):
            while True:
                leader = replica.snapshot_status()["leader"]
                if leader and leader != replica.selfNode.address and not replica.is_raft_leader:
                    return str(leader)
                await trio.sleep(0.01)
        raise StoreUnavailable(
            f"leadership transfer: {address} was asked to take over, but no new leader "
            f"was seen within {self._op_timeout:.0f}s")

    # --- membership -----------------------------------------------------------------------------

    async def add_member(self, address: str, *, name: str | None = None) -> None:
        """Add a replica (started with the full member list) to the cluster; returns once the
        change is applied here. Adding an existing member is a no-op."""
        if name:
            self._names[address] = name
        await self._change_membership("add", address)

    async def remove_member(self, address: str) -> None:
        """Remove a replica; removing an absent member is a no-op."""
        await self._change_membership("remove", address)

    async def _change_membership(self, kind: str, address: str) -> None:
        check_address(address, "member address")
        replica = self.replica
        if address == replica.selfNode.address and kind == "remove":
            raise StoreError("a replica cannot remove itself; ask another member")
        deadline = trio.current_time() + max(self._op_timeout, 10.0)
        while True:
            members = {n.address for n in replica.otherNodes}
            if (kind == "add") == (address in members):
                return
            waiter = _AsyncWaiter()

            def callback(result: Any, fail: int, waiter: _AsyncWaiter = waiter) -> None:
                self._call_soon(waiter, result, None if fail == FAIL_REASON.SUCCESS else fail)

            if kind == "add":
                replica.addNodeToCluster(address, callback=callback)
            else:
                replica.removeNodeFromCluster(address, callback=callback)
            with trio.move_on_at(deadline):
                await waiter.event.wait()
            if waiter.event.is_set() and waiter.fail is None:
                continue  # re-check the member list
            if trio.current_time() + 0.1 >= deadline:
                raise StoreUnavailable(f"{kind} member {address}: not applied before the deadline")
            # Denied while the leader's previous change or first entry is uncommitted: retry.
            await trio.sleep(0.1)

    # --- status ---------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        replica = self.replica
        raft = replica.snapshot_status()
        me = raft["address"]
        members = [
            {
                "name": self._names.get(me, me),
                "address": me,
                "match_index": raft["commit_index"] if raft["raft_leader"] else None,
                "last_contact_s": 0.0 if raft["raft_leader"] else None,
            }
        ]
        for address, peer in sorted(raft["peers"].items()):
            members.append(
                {
                    "name": self._names.get(address, address),
                    "address": address,
                    "match_index": peer["match_index"],
                    "last_contact_s": peer["last_contact_s"],
                    "connected": peer["connected"],
                }
            )
        leader = raft["leader"]
        with replica.state_lock:
            revision = replica.kv.revision
        return {
            "name": self.name,
            "address": me,
            "leader": self._names.get(leader, leader) if leader else None,
            "leader_address": leader,
            "term": raft["term"],
            "commit_index": raft["commit_index"],
            "applied_index": raft["applied_index"],
            "revision": revision,
            "members": members,
            "is_leader": replica.has_lease(),
            "has_quorum_lease": replica.has_lease(),
            "lease_remaining_s": round(replica.lease_remaining(), 4),
            "log_length": raft["log_length"],
            "log_first_index": raft["log_first_index"],
            "applied_truncations": raft["applied_truncations"],
            "last_snapshot_fork_ms": raft["last_snapshot_fork_ms"],
            "in_flight": sum(1 for p in self._in_flight.values() if not p.answered),
            "pending": len(self._pending),
            "read_points": dict(self.read_points),
        }

    def digest(self) -> tuple[int, str]:
        """(revision, state digest) of the local replica."""
        replica = self.replica
        with replica.state_lock:
            return replica.kv.revision, replica.kv.digest()


def _answer(proposal: _Proposal, fail: int) -> None:
    """Tell every waiter of the proposal that it failed with ``fail``."""
    for _, waiter, _, _ in proposal.items:
        waiter(None, fail)
    for waiter in proposal.barriers:
        waiter(None, fail)


def _raise_rejected(result: Any) -> Any:
    if isinstance(result, BaseException):
        raise result
    return result


@asynccontextmanager
async def open_raft_store(config: ReplicaConfig, **kwargs: Any) -> AsyncIterator[RaftStore]:
    """``async with open_raft_store(config) as store:`` -- closed (journal flushed) on exit."""
    store = await RaftStore.open(config, **kwargs)
    try:
        yield store
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()
