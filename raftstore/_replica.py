"""The pysyncobj binding: one Raft replica of a :class:`KVState`, ticking on its own thread.

This module owns everything that touches pysyncobj 0.3.17 internals. What it changes, and why:

Log matching (Raft §5.3). pysyncobj's follower deletes every entry after ``prevLogIdx`` on each
append-entries message, even entries that match the leader's. Under pipelined load a message with
a stale ``prevLogIdx`` (the leader resets ``nextIndex`` from an older reply) makes a follower drop
entries it already acknowledged, and even applied; if the leader then dies, a committed entry
can vanish from the quorum that held it. :meth:`Replica._SyncObj__onMessageReceived` trims the
entries that already match by (index, term) before pysyncobj sees the message, so a follower
truncates only on a real conflict, and answers a stale heartbeat without touching its log
(committing no further than the point the leader has verified). Real conflicts below the applied
index are counted (``applied_truncations``): that number must stay 0.

Leadership lease. ``is_leader()`` means: Raft leader, and a majority (counting itself) has
acknowledged an append-entries that this leader *sent* at most ``lease_s`` ago. The transport
stamps each append-entries with (term, send time on the leader's monotonic clock) and followers
echo the stamp in their reply, so the lease is measured from the send time, never from a late
reply. Followers refuse to vote while they heard from a leader less than ``vote_refusal_s``
(90% of ``raft_min_timeout``) ago, and for that long after they start, so no other leader can
be elected while a majority's stamps are younger than that; ``lease_s`` is 80% of
``raft_min_timeout``. The one exception is a vote request marked ``transfer``: only a replica
the leader asked to take over sends it, after that leader gave up its lease
(:meth:`Replica.transfer_leadership`). The leader itself does not refuse: a higher-term vote request makes it
step down at once (and stop claiming the lease), which also lets a partitioned node that comes
back with a higher term rejoin. pysyncobj's own step-down (``leaderFallbackTimeout``, 30 s by
default) is set near the election timeout.

Elections. pysyncobj starts an election as soon as a tick finds the election deadline passed,
before it reads its sockets: a replica whose tick thread was held up (a long apply, the GIL, a
loaded host) would raise the term while the leader's heartbeats sit unread, and the leader
steps down on the higher term (leadership flapped under load). :meth:`Replica._onTick` reads
pending messages first, then runs a PreVote round (Raft thesis §9.6): the term is raised only
once a majority says it would vote, and a follower that heard from the leader recently, or a
leader holding its lease, says no. A replica that was cut off rejoins without disruption.

Security. Every message between replicas is pickled. With ``password`` set, pysyncobj's
TcpConnection authenticates and decrypts each frame *before* unpickling it, including the first
frames of an incoming connection (the random session key, the node address and utility commands
such as ``add``/``remove``), and every later frame must carry the per-connection random key, so
frames cannot be replayed across connections. Without a password anything that connects is
unpickled: arbitrary code execution for any local user. So the secret is mandatory for any
non-loopback address, pysyncobj's default of binding 0.0.0.0 is replaced by binding the
replica's own address, and the process harness (``python -m raftstore``) always requires a
secret. The frame cipher is AES-256-GCM (:class:`_FrameCipher`) instead of pysyncobj's Fernet,
for speed; frames are not deflated (:class:`_StoredZlib`). Remaining gap: a peer that never
authenticates can still make a replica buffer the bytes it sends (frames are length-prefixed
and read whole before the tag is checked).

Durability. pysyncobj's journal is a memory-mapped file written in place and flushed only on
clean shutdown; its small meta file (term, vote, commit index) is replaced atomically. The
promise here: a process crash (SIGKILL) of any replicas, all at once included, loses no
acknowledged write, because the mapping's dirty pages live in the kernel page cache and reach
the file after the process dies. A machine power loss can lose recent entries on every replica
at once. With ``fsync=True`` the journal file and the meta file are fsync'ed before a replica
answers or sends anything that depends on them (votes, acknowledgements, append-entries), so an
acknowledged write also survives power loss, at a latency cost.

Snapshots (log compaction) are written by a thread of this process, without fork: the tick
thread takes a frozen view of the KVState held by :class:`_StateHolder` (two list copies, ~1 ms
at 30,000 pods: keys, values and events are immutable objects) and goes on applying, while the
writer thread pickles the view (as columns, see ``KVState.__getstate__``) into a zstd stream
(:class:`_SnapshotCodec`; gzip snapshots of older releases are still read) and renames it into
place (fsync'ed first with ``fsync=True``). A forked writer cost more: the fork itself (7-44 ms
of the tick thread at 600 MB), a copy of every page the child touched (~55,000 at full size,
its refcount updates) and a fault on every page the parent then wrote. A snapshot file is read
once when loaded. Three crash windows of pysyncobj's compaction are closed here: the journal is
compacted by writing a new file that atomically replaces the old one (pysyncobj rewrites it in
place); a journal that still starts before the snapshot (crash after the snapshot, before the
compaction) keeps its tail at start instead of being cleared to the snapshot's last entries
(:class:`_Journal`, :meth:`Replica._align_journal_to_snapshot`); and a snapshot of this
replica's own that was still being written when a snapshot from the leader replaced the state
is dropped, not renamed over the leader's (:meth:`Replica._supersede_snapshot`). Each replica
snapshots at its own phase of the interval, so replicas do not snapshot at the same index
(:func:`_next_compaction_threshold`).

Latency path of a write forwarded by a follower (each thread hand-off costs 50-100 us here):
the caller's thread forwards it while the tick thread sleeps (``tick_lock``, :class:`_TickPoller`);
the leader appends it and sends the entry (to the forwarding follower first, its answer riding
on that append-entries) inside the poll round that read it, commits on the acknowledgement that
makes a majority, sends the new commit index before applying to each follower that forwarded a
write it covers (or waits for a read point), and followers apply it as soon as they read it and
do not acknowledge it. A follower that waits for nothing in it learns the commit index from the
next append-entries instead, at the latest ``commit_notice_s`` later: under load the next entry
goes out within milliseconds, and each message saved is a send, a wake-up and a receive (tens of
microseconds of CPU each here). Idle, the tick thread sleeps until its next deadline.

A follower's linearizable read asks the leader for a read point over UDP first
(:mod:`raftstore._readindex`: the leader's responder thread answers from
:meth:`Replica.read_point_now`, so neither tick thread is on that path); the ReadIndex round
over the Raft connections (:meth:`Replica.read_index`) is the fallback.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import ipaddress
import logging
import os
import pickle as _pickle
import select
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from queue import Empty, SimpleQueue
from typing import Any

import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pysyncobj import SyncObj, SyncObjConf, SyncObjConsumer, replicated
from pysyncobj import pickle as _pysyncobj_pickle
from pysyncobj import serializer as _pysyncobj_serializer
from pysyncobj import tcp_connection as _tcp_connection
from pysyncobj.config import FAIL_REASON, SERIALIZER_STATE
from pysyncobj.journal import FileJournal, ResizableFile
from pysyncobj.monotonic import monotonic as _raft_clock
from pysyncobj.poller import POLL_EVENT_TYPE, PollPoller
from pysyncobj.syncobj import _RAFT_STATE, SyncObjException
from pysyncobj.transport import TCPTransport, TransportNotReadyError

from ._nonces import Nonces
from ._readindex import ReadIndexCodec, ReadIndexResponder, udp_endpoint
from ._state import KVState
from ._types import StoreError

__all__ = ["FAIL_REASON", "Replica", "ReplicaConfig", "check_address", "is_loopback_address"]

logger = logging.getLogger("raftstore.replica")

# pysyncobj's deadlines (election, heartbeat) are on CLOCK_MONOTONIC_RAW (_raft_clock), whose
# offset from time.monotonic() is not zero (0.23 s on this host): compare them only with it.
# Our own clocks (lease stamps, leader contact) stay on time.monotonic().

_base_on_message = SyncObj._SyncObj__onMessageReceived  # type: ignore[attr-defined]
_base_load_dump = SyncObj._SyncObj__loadDumpFile  # type: ignore[attr-defined]
_base_apply_entries = SyncObj._SyncObj__applyLogEntries  # type: ignore[attr-defined]
_base_send_append_entries = SyncObj._SyncObj__sendAppendEntries  # type: ignore[attr-defined]
_base_on_leader_changed = SyncObj._SyncObj__onLeaderChanged  # type: ignore[attr-defined]


class _TruncationCounter(logging.Handler):
    """Counts pysyncobj's own "truncating already-applied log entries" reports in this process,
    so a test can tell whether the hazard happened even outside our interception."""

    count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "truncating already-applied" in str(record.msg):
            _TruncationCounter.count += 1


def _not_a_bind_failure(record: logging.LogRecord) -> bool:
    # pysyncobj logs a traceback when it cannot bind; we raise a clear StoreError instead.
    return not (record.exc_info and isinstance(record.exc_info[1], TransportNotReadyError))


logging.getLogger("pysyncobj.syncobj").addHandler(_TruncationCounter(logging.CRITICAL))
logging.getLogger("pysyncobj.syncobj").addFilter(_not_a_bind_failure)


class _StoredZlib:
    """Stand-in for the ``zlib`` module inside pysyncobj's TcpConnection.

    pysyncobj deflates every frame at level 3. zlib allocates ~256 KiB of state per call, which
    glibc often serves with mmap/munmap: measured here at 100-150 us per small message, several
    times per write -- the largest single cost of a replicated write. Frames are already
    encrypted and go over loopback/LAN, so we emit the same zlib *format* with stored
    (uncompressed) blocks: ~7 us, and still readable by a stock pysyncobj peer.
    """

    @staticmethod
    def compress(data: bytes, level: int = -1) -> bytes:
        parts = [b"\x78\x01"]
        n = len(data)
        pos = 0
        while True:
            chunk = data[pos : pos + 65535]
            pos += len(chunk)
            final = pos >= n
            parts.append(struct.pack("<BHH", final, len(chunk), len(chunk) ^ 0xFFFF))
            parts.append(chunk)
            if final:
                break
        parts.append(struct.pack(">I", zlib.adler32(data)))
        return b"".join(parts)

    decompress = staticmethod(zlib.decompress)


_tcp_connection.zlib = _StoredZlib  # type: ignore[assignment]

# pysyncobj pickles every message, command and snapshot with protocol 2, which has no bytes
# opcode: every bytes object (each command in a log entry, each value in a snapshot) is pickled
# as a codecs.encode() call and rebuilt by calling it. Protocol 5 stores bytes as they are:
# an append-entries message with one put measured 8.3 -> 1.8 us to pickle and 6.8 -> 2.1 us
# to unpickle here, about seven messages and four commands per write. pickle.loads reads
# every protocol, so journals and snapshots written before stay readable.
_PICKLE_PROTOCOL = 5


def _pickle_dumps(obj: Any, protocol: int | None = None) -> bytes:
    return _pickle.dumps(obj, _PICKLE_PROTOCOL)


def _pickle_dump(obj: Any, file: Any, protocol: int | None = None) -> None:
    _pickle.dump(obj, file, _PICKLE_PROTOCOL)


_pysyncobj_pickle.dumps = _pickle_dumps  # type: ignore[assignment]
_pysyncobj_pickle.dump = _pickle_dump  # type: ignore[assignment]


def _read_available(conn: _tcp_connection.TcpConnection) -> None:
    """TcpConnection's read of what a poll event announced, with fewer system calls.

    pysyncobj reads until recv() fails with EAGAIN (an exception per message) and asks for
    SO_ERROR after every successful read. A read shorter than the buffer has emptied the socket
    (the next poll reports anything newer), and an error shows on the next recv() anyway."""
    sock = conn._TcpConnection__socket  # type: ignore[attr-defined]
    size = conn._TcpConnection__recvBufferSize  # type: ignore[attr-defined]
    while True:
        try:
            incoming = sock.recv(size)
        except BlockingIOError:
            break
        except OSError:
            conn.disconnect()
            break
        if not incoming:
            conn.disconnect()
            break
        conn._TcpConnection__readBuffer += incoming  # type: ignore[attr-defined]
        if len(incoming) < size:
            break
    conn._TcpConnection__lastReadTime = _raft_clock()  # type: ignore[attr-defined]


_tcp_connection.TcpConnection._TcpConnection__tryReadBuffer = _read_available  # type: ignore[attr-defined]


# zstd level of snapshots. A full-size state (30,000 pods, 100,000 events of history) pickles
# to ~135 MB: zlib level 1 (gzip) packed it to 12.1 MB in 0.42 CPU-s, zstd level 1 to 7.6 MB in
# 0.09 CPU-s (and unpacks it in 0.08 s instead of 0.31 s on restart). The snapshot writer
# competes with the replicas for the cores, so its CPU is what counts.
_SNAPSHOT_ZSTD_LEVEL = 1
# A snapshot file starts with one of these: zstd frames (written now) or gzip (written before).
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"


class _SnapshotCodec:
    """Stand-in for the ``gzip`` module inside pysyncobj's serializer, which writes a snapshot
    as ``with gzip.GzipFile(fileobj=f, mode="wb") as g: pickle.dump(data, g)`` and reads it as
    ``pickle.load(gzip.GzipFile(fileobj=f))``: writes zstd, reads zstd or gzip (snapshots
    written before, by this or an older release) by the file's first bytes. The leader sends
    its snapshot file as it is to a follower that lags behind, so all replicas of a cluster
    must run a release that reads zstd (as they must for the frame cipher)."""

    @staticmethod
    def GzipFile(*, fileobj: Any, mode: str = "rb") -> Any:  # noqa: N802 - gzip's name
        if mode.startswith("w"):
            # closefd=False: pysyncobj closes (and renames) the file itself.
            return zstandard.ZstdCompressor(level=_SNAPSHOT_ZSTD_LEVEL).stream_writer(
                fileobj, closefd=False
            )
        magic = fileobj.read(4)
        fileobj.seek(0)
        if magic == _ZSTD_MAGIC:
            return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(fileobj))
        if magic[:2] == _GZIP_MAGIC:
            return gzip.GzipFile(fileobj=fileobj, mode="rb")
        raise ValueError(f"not a snapshot file (starts with {magic!r})")


_pysyncobj_serializer.gzip = _SnapshotCodec  # type: ignore[attr-defined]

# How long the snapshot writer thread sleeps between slices of its work (a pickle frame of
# 64 KiB, a slice of a column): any sleep hands the GIL to a thread waiting for it at once,
# where a busy writer would keep it for up to sys.getswitchinterval() (5 ms) per hand-off.
_SNAPSHOT_YIELD_S = 0.0


# One lock per snapshot file written by a writer thread of this process: a replica restarted
# in the same process and directory while the stopped one's writer still writes (stop() waits
# only so long) would share the .tmp file with it, each writing into the other's.
_snapshot_file_locks: dict[str, threading.Lock] = {}
_snapshot_file_locks_guard = threading.Lock()


def _snapshot_file_lock(path: str) -> threading.Lock:
    with _snapshot_file_locks_guard:
        return _snapshot_file_locks.setdefault(os.path.abspath(path), threading.Lock())


def _hand_over_gil() -> None:
    time.sleep(_SNAPSHOT_YIELD_S)


class _GilYieldingWriter:
    """The pickler's file (it writes a frame of ~64 KiB at a time): hands the GIL over after
    each frame. The C pickler never does on its own while it runs."""

    def __init__(self, out: Any) -> None:
        self._out = out

    def write(self, frame: Any) -> int:
        written = int(self._out.write(frame))
        time.sleep(_SNAPSHOT_YIELD_S)
        return written

# Key derivation for the frame cipher: the secret is a high-entropy file, the iterations only
# slow down guessing a weak one; the salt separates this use of the secret from others.
_KDF_SALT = b"edgeplane raftstore frames v1"
_KDF_ITERATIONS = 100_000
_FRAME_VERSION = b"\x01"


class _FrameCipher:
    """AES-256-GCM in place of pysyncobj's Fernet, with the interface TcpConnection uses.

    Fernet (AES-CBC + HMAC + base64, MAC checked twice on receipt) cost ~100 us per frame here,
    several frames per write; AES-GCM costs ~4 us and authenticates before anything is
    decrypted or unpickled, like Fernet. Frame: version | 8-byte sender timestamp | 12-byte
    nonce | ciphertext+tag, with version and timestamp authenticated as associated data. Nonces
    are a random 8-byte prefix per cipher object plus a 4-byte counter (a new prefix when it
    wraps), so a nonce never repeats under one key. All replicas of a cluster must run this.
    """

    def __init__(self, secret: bytes) -> None:
        key = hashlib.pbkdf2_hmac("sha256", secret, _KDF_SALT, _KDF_ITERATIONS, 32)
        self.key = key  # other channels derive their own keys from it (see _readindex)
        self._aead = AESGCM(key)
        self._nonce = Nonces().next
        self._cached: tuple[bytes, bytes] | None = None

    def encrypt_at_time(self, data: bytes, current_time: int) -> bytes:
        header = _FRAME_VERSION + struct.pack(">Q", current_time)
        nonce = self._nonce()
        return header + nonce + self._aead.encrypt(nonce, data, header)

    def _open(self, token: bytes) -> bytes:
        cached = self._cached
        if cached is not None and cached[0] is token:
            return cached[1]
        if len(token) < 21 + 16 or token[:1] != _FRAME_VERSION:
            raise ValueError("not a raftstore frame")
        plain = self._aead.decrypt(token[9:21], token[21:], token[:9])
        self._cached = (token, plain)
        return plain

    def extract_timestamp(self, token: bytes) -> int:
        self._open(token)  # authenticate first: the timestamp is only trusted if the tag is
        return int(struct.unpack(">Q", token[1:9])[0])

    def decrypt(self, token: bytes) -> bytes:
        plain = self._open(token)
        self._cached = None
        return plain


# Added to a computed sleep: poll() rounds to milliseconds, and waking just before a deadline
# would make the tick do nothing and spin until it passes.
_TIMER_SLACK_S = 0.001
# Leadership transfer, in units of the maximum election timeout: how long the leader waits for
# the target to hold its whole log (writes are refused meanwhile), then for the target to win
# the election it asked for. Raft thesis §3.10 aborts after about one election timeout; twice
# leaves room for a loaded host, and both together stay well under a write's 5 s deadline.
_TRANSFER_CATCH_UP_TIMEOUTS = 2.0
_TRANSFER_ELECTION_TIMEOUTS = 2.0


@dataclass(slots=True)
class _Transfer:
    """A leadership transfer under way on this leader (tick thread only)."""

    target: Any  # the pysyncobj Node
    callback: Callable[[str | None, str | None], None]
    term: int
    deadline: float  # on _raft_clock
    sent: bool = False  # TimeoutNow sent: from then on the lease never comes back this term

# Entries in the log before a snapshot is taken (written by a thread, off the latency path);
# entries are group-committed batches, so this covers many more writes.
DEFAULT_COMPACTION_MIN_ENTRIES = 20_000


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    """Timing and storage of one replica. Defaults are tuned for loopback/LAN clusters."""

    self_address: str
    peers: tuple[str, ...]
    data_dir: str
    secret: str | bytes | None = None
    history_limit: int = 100_000
    fsync: bool = False
    # Heartbeat period; elections need 3+ missed heartbeats (pysyncobj checks min > 3 * period).
    # Heartbeats are most of an idle replica's CPU (each round wakes every replica). 100 ms is
    # what the 50 ms idle poll used to round an 80 ms period up to, so failover and lease
    # margins are as measured before the tick thread slept until its deadlines.
    heartbeat_s: float = 0.1
    # Election timeout range: a dead leader is replaced within about max + one vote round
    # (well under the 1.5 s target), while 4+ heartbeats per timeout leave margin for busy hosts.
    raft_min_timeout: float = 0.4
    raft_max_timeout: float = 0.8
    # A leader cut off from the majority steps down after this (pysyncobj default: 30 s).
    leader_fallback_s: float = 1.0
    # Poll timeout of the tick thread while something needs polling (no connections yet,
    # ReadIndex answers to time out; the snapshot writer wakes it when done). Otherwise the thread sleeps until its next deadline
    # (heartbeat, election timeout, reconnect), capped at idle_wake_s.
    tick_s: float = 0.05
    # Longest sleep of an idle tick thread: pysyncobj's once-a-second work (saving the commit
    # index, time-based compaction) still runs about on time.
    idle_wake_s: float = 1.0
    compaction_min_entries: int = DEFAULT_COMPACTION_MIN_ENTRIES
    compaction_min_time_s: float = 300.0
    # A follower's shortest time between two "applied" notices to the owner (on_applied), each
    # of which wakes the owner's event loop: ~50 us of CPU on the loop's side alone, per entry
    # when a replica applies an entry every few ms (bench.applycost: a follower's loop CPU per
    # write -30 %). The first apply after a quiet spell is announced at once; later ones within
    # this time go with the first tick after it (a busy replica ticks every few ms anyway), at
    # the latest twice this time after the last notice, or at once when applied_urgent() says
    # that a read waits for them. Store watchers see those changes that much later. A leader
    # announces every apply at once (its controllers wait to see their own writes).
    apply_notice_s: float = 0.004
    # Longest a leader holds back a commit index that no follower waits for (none forwarded a
    # write it covers, no read point is pending): the next append-entries carries it instead of
    # a message of its own. About one entry's spacing at full load (~200 entries/s), so most
    # notices ride along; followers' watchers see the leader's own writes that much later (a
    # follower's applies are announced every apply_notice_s anyway). 0: at once, to everyone.
    commit_notice_s: float = 0.005

    @property
    def lease_s(self) -> float:
        # 80% of the minimum election timeout: margin for clock-rate differences and the time
        # between checking the lease and serving the read.
        return self.raft_min_timeout * 0.8

    @property
    def vote_refusal_s(self) -> float:
        # Longer than the lease (the lease's safety rests on it), a little shorter than the
        # minimum election timeout, so that a follower whose leader died does not refuse the
        # first candidate that timed out at about the same moment (one election round saved).
        return self.raft_min_timeout * 0.9


def _snapshot_phase(config: ReplicaConfig) -> int:
    """Where in each interval of ``compaction_min_entries`` this replica writes its snapshots:
    a share of the interval by the replica's place among the members, so that replicas do not
    write theirs at the same log index (writers at once starve a 2-core host; a follower that
    snapshots alone is covered by the other's acknowledgement)."""
    members = sorted({config.self_address, *config.peers})
    rank = members.index(config.self_address)
    return config.compaction_min_entries * rank // len(members)


def _staggered(config: ReplicaConfig) -> int:
    """This replica's first compaction threshold (entries in the log): the interval plus its
    phase. Later ones are set by :func:`_next_compaction_threshold`."""
    return config.compaction_min_entries + _snapshot_phase(config)


def _next_compaction_threshold(config: ReplicaConfig, snapshot_index: int) -> int:
    """The compaction threshold after a snapshot at ``snapshot_index`` (the log now starts
    there): the next snapshot comes at this replica's next phase point, at least half an
    interval on. A snapshot that came late (the last one still being written, a busy tick
    thread) does not shift the ones after it: thresholds staggered for good (a fixed 5,000 /
    6,666 / 8,333 entries) met at common multiples, where two masters of bench.scale's full
    size wrote their largest snapshot at once and the run's slowest API calls gathered."""
    every = config.compaction_min_entries
    phase = _snapshot_phase(config)
    earliest = snapshot_index + every // 2
    target = phase + -(-(earliest - phase) // every) * every  # first phase point >= earliest
    # pysyncobj compacts once the log (which starts at snapshot_index) holds more entries than
    # the threshold, and snapshots the entry before the last applied one.
    return max(2, target - snapshot_index + 1)


def check_address(address: str, what: str = "address") -> str:
    """Return ``address`` if it is ``host:port`` with a port in 1-65535, else raise StoreError."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise StoreError(f"invalid {what} {address!r}: expected host:port (port 1-65535)")
    return address


def is_loopback_address(address: str) -> bool:
    """True for ``127.x.y.z:port``, ``[::1]:port`` or ``localhost:port``."""
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _StateHolder(SyncObjConsumer):
    """Holds the KVState so pysyncobj snapshots exactly it (and nothing of the replica's
    threads, locks or callbacks): a consumer serializes only attributes set after its base
    ``__init__``, and a loaded snapshot replaces ``kv``, so never cache ``holder.kv``."""

    def __init__(self, history_limit: int) -> None:
        super().__init__()
        self.kv = KVState(history_limit)


class _Journal(FileJournal):
    """pysyncobj's file journal with a crash-safe compaction and an optional sync mode.

    pysyncobj compacts by rewriting the journal in place from its first byte, so a crash in the
    middle leaves a journal that ends early: entries this replica had acknowledged are gone.
    Here the kept entries are written to a new file that atomically replaces the old one.
    With ``fsync`` the file is fsync'ed by :meth:`sync` (called before the replica sends or
    counts anything that depends on it) and term/vote changes are fsync'ed. Nothing here
    msyncs the mapping (see _close_journal_file).
    """

    def __init__(self, path: str, *, fsync: bool) -> None:
        super().__init__(path)
        self._path = path
        self._fsync = fsync
        self.dirty = False

    def add(self, command: bytes, idx: int, term: int) -> None:
        super().add(command, idx, term)
        self.dirty = True

    def deleteEntriesFrom(self, entryFrom: int) -> None:  # noqa: N802 - pysyncobj's name
        super().deleteEntriesFrom(entryFrom)
        self.dirty = True

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:  # noqa: N802, N803
        # pysyncobj sets it on every heartbeat, and a set marks the meta file for rewriting
        # (a file create + rename each second on an idle follower): only when it moved.
        if raftCommitIndex != self.getRaftCommitIndex():
            super().setRaftCommitIndex(raftCommitIndex)

    def deleteEntriesTo(self, entryTo: int) -> None:  # noqa: N802 - pysyncobj's name
        keep = self._FileJournal__journal[entryTo:]  # type: ignore[has-type]
        tmp = self._path + ".compacting"
        if os.path.exists(tmp):
            os.unlink(tmp)
        fresh = FileJournal(tmp)
        for entry in keep:
            fresh.add(*entry)
        offset = fresh._FileJournal__currentOffset
        _close_journal_file(fresh._FileJournal__journalFile, sync=self._fsync)
        os.replace(tmp, self._path)
        if self._fsync:
            _fsync_path(os.path.dirname(os.path.abspath(self._path)))
        # The replaced file's contents are obsolete: nothing of it needs to reach the disk.
        _close_journal_file(self._FileJournal__journalFile, sync=False)  # type: ignore[has-type]
        self._FileJournal__journalFile = ResizableFile(self._path)
        self._FileJournal__journal = list(keep)
        self._FileJournal__currentOffset = offset

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:  # noqa: N802, N803
        super().setCurrentTerm(term, votedForNodeId)
        if self._fsync:
            _fsync_path(self._path + ".meta")
            _fsync_path(os.path.dirname(os.path.abspath(self._path)))

    def sync(self) -> None:
        if self.dirty:
            # fsync, not pysyncobj's flush(): see _close_journal_file.
            os.fsync(self._FileJournal__journalFile._ResizableFile__f.fileno())  # type: ignore[has-type]
            self.dirty = False


def _close_journal_file(journal_file: ResizableFile, *, sync: bool) -> None:
    """Unmap and close a journal file, fsync'ed first if ``sync``. pysyncobj's _destroy() and
    flush() msync the whole mapping, and CPython's mmap.flush() holds the GIL through msync: at
    the end of each snapshot the compaction stopped the replica's whole process (event loop and
    tick thread) for 43-52 ms with an 80 MB journal on an idle machine (5-7 ms without the
    msyncs), and bench.scale's slowest API calls (0.15-0.3 s) gathered at those moments on a
    loaded one. os.fsync lets go of the GIL and writes the same pages (those dirtied through a
    shared mapping are in the file's page cache)."""
    mapping = journal_file._ResizableFile__mm  # type: ignore[attr-defined]
    file = journal_file._ResizableFile__f  # type: ignore[attr-defined]
    if sync:
        os.fsync(file.fileno())
    mapping.close()
    file.close()


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _StampingTransport(TCPTransport):
    """Adds the lease stamp to append-entries and echoes it in the follower's reply; syncs the
    journal before anything leaves when the replica runs with ``fsync=True``."""

    def send(self, node: Any, message: Any) -> bool:
        replica: Replica = self._syncObj
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "append_entries":
            message["lease_stamp"] = (message["term"], time.monotonic())
            # It carries the commit index: no separate notice owed (see Replica._notify_commit).
            replica._notice_due.pop(node, None)
            if replica._commit_notice and not message.get("entries"):
                message["no_ack"] = True
        elif kind == "next_node_idx" and replica._echo is not None:
            message["lease_echo"] = replica._echo
        elif kind == "request_vote" and message["term"] == replica._transfer_term:
            # The election the leader asked for (TimeoutNow): voters that heard from that
            # leader lately vote anyway (see Replica._on_timeout_now).
            message["transfer"] = True
        elif kind == "apply_command_response" and "log_idx" in message:
            # The forwarding follower waits for this index: tell it of the commit at once.
            forwarded = replica._forwarded.setdefault(node, deque())
            if not forwarded or message["log_idx"] > forwarded[-1]:  # (sent twice if deferred)
                forwarded.append(message["log_idx"])
        if (
            kind == "append_entries"
            and replica._defer_kind == "apply_command_response"
            and replica._deferred
        ):
            # Forwarded commands' answers ride on the append-entries to their follower (one
            # message fewer per forwarded write); the follower registers them before it looks
            # at the entries. Answers for nodes without an append-entries go out on their own.
            mine = [m for n, m in replica._deferred if n == node]
            if mine:
                message["responses"] = mine
                replica._deferred = [(n, m) for n, m in replica._deferred if n != node]
        hold = replica._ae_hold
        if hold is not None and kind == "append_entries" and node != replica._ae_first:
            hold.append((node, message))
            return True
        if kind == "next_node_idx" and replica._skip_ack and message["success"]:
            return True
        if replica._deferred is not None and kind == replica._defer_kind:
            # Held back until the latency-critical sends of this tick are out (see
            # Replica._send_deferred); stamped now, so the lease still counts from the
            # leader's send time.
            replica._deferred.append((node, message))
            return True
        if replica._synced_journal is not None and kind in (
            "append_entries",
            "next_node_idx",
            "response_vote",
            "apply_command_response",
        ):
            replica._synced_journal.sync()
        return super().send(node, message)


class _TickPoller(PollPoller):
    """pysyncobj's poll poller, releasing the replica's tick lock while it blocks.

    The tick thread holds ``tick_lock`` for everything it does except waiting in poll(), so
    another thread that takes the lock (see :meth:`Replica._applyCommand`) may act on the
    replica's state exactly while the tick thread sleeps, and never concurrently with it."""

    tick_lock: threading.Lock
    next_wait: Callable[[], float]

    def poll(self, timeout: float) -> None:
        raw = self._PollPoller__poll  # type: ignore[attr-defined]
        if timeout > 0:
            # Recomputed here, after the tick: a tick that just sent the heartbeats has moved
            # the deadline (a wait computed before it would wake the thread again at once).
            timeout = self.next_wait()
        if timeout > 0:
            self.tick_lock.release()
            try:
                events = raw.poll(timeout * 1000)
            finally:
                self.tick_lock.acquire()
        else:
            events = raw.poll(0)
        callbacks = self._PollPoller__descrToCallbacks  # type: ignore[attr-defined]
        for descr, event in events:
            mask = 0
            if event & select.POLLIN:
                mask |= POLL_EVENT_TYPE.READ
            if event & select.POLLOUT:
                mask |= POLL_EVENT_TYPE.WRITE
            if event & (select.POLLERR | select.POLLHUP):
                mask |= POLL_EVENT_TYPE.ERROR
            callback = callbacks.get(descr)
            if callback is not None:  # unsubscribed by an earlier callback of this round
                callback(descr, mask)


class Replica(SyncObj):
    """A Raft replica applying msgpack commands to a KVState on its own tick thread.

    Thread rules: ``propose`` may be called from any thread; ``callback(result, fail_reason)``
    and ``on_applied()`` run on the tick thread and must not block. Read ``kv`` only while
    holding ``state_lock`` (apply holds it).
    """

    def __init__(
        self,
        config: ReplicaConfig,
        *,
        on_applied: Callable[[], None] | None = None,
        on_state_changed: Callable[[], None] | None = None,
        applied_urgent: Callable[[], bool] | None = None,
    ) -> None:
        check_address(config.self_address, "replica address")
        for peer in config.peers:
            check_address(peer, "peer address")
        if config.secret is None and not (
            is_loopback_address(config.self_address)
            and all(is_loopback_address(p) for p in config.peers)
        ):
            raise StoreError(
                f"a cluster secret is required when a replica uses a non-loopback address "
                f"({config.self_address}, peers {list(config.peers)}): without it, anything "
                f"that connects can make the replica unpickle arbitrary data"
            )
        os.makedirs(config.data_dir, exist_ok=True)
        # Every attribute is set before SyncObj.__init__ so that snapshots leave them out.
        self.config = config
        self.state_lock = threading.Lock()
        self._holder = _StateHolder(config.history_limit)
        self._on_applied = on_applied
        self._on_state_changed = on_state_changed
        self._applied_urgent = applied_urgent
        self._applied_unannounced = False
        # time.monotonic() before which a new apply is not announced (see apply_notice_s)
        self._announce_not_before = 0.0
        self._echo: tuple[int, float] | None = None
        self._acks: dict[Any, float] = {}
        self._acks_term = -1
        self._lease_until = 0.0
        self._lease_term = -1
        self._started_at = time.monotonic()
        self._leader_contact = 0.0
        self.applied_truncations = 0
        # The tick thread's part of the last snapshot (the frozen view, starting the writer).
        self.last_snapshot_fork_s = 0.0
        # The snapshot writer thread (see _take_snapshot; started by start()), its jobs
        # (None: stop), and the snapshot in hand: log index, written, succeeded.
        self._snapshot_writer: threading.Thread | None = None
        self._snapshot_jobs: SimpleQueue[tuple[Any, str] | None] = SimpleQueue()
        self._snapshot_idx: int | None = None
        self._snapshot_done = False
        self._snapshot_ok = False
        # Set when a snapshot from the leader replaced the state while one was being written:
        # the older one must not be renamed over it (see _supersede_snapshot).
        self._snapshot_superseded = False
        self._snapshot_rename_lock = threading.Lock()
        self.votes_refused = 0
        self.prevotes_started = 0
        # Leadership transfer (see transfer_leadership): requests from other threads, the
        # transfer this leader runs, and on the target the term of the election it was asked
        # to start at once.
        self._transfer_requests: deque[tuple[str | None, Callable[[str | None, str | None], None]]] = deque()
        self._transfer: _Transfer | None = None
        self._transfer_term = -1
        # ReadIndex (see read_index()): callbacks queued by other threads, requests sent to the
        # leader by id, and answers waiting for this replica to apply up to their index.
        self._read_requests: deque[Callable[[bool], None]] = deque()
        self._read_seq = 0
        self._read_pending: dict[int, tuple[float, list[Callable[[bool], None]]]] = {}
        self._read_waiting: list[tuple[int, float, list[Callable[[bool], None]]]] = []
        # ReadIndex over UDP (see raftstore._readindex): this replica's responder, if its
        # address is an IPv4 literal and its UDP port could be bound.
        self.read_index_codec = ReadIndexCodec(None)
        self._ri_responder: ReadIndexResponder | None = None
        self._prevote_term = -1
        self._prevote_grants: set[Any] = set()
        # Leader: sending a commit notice (see _SyncObj__applyLogEntries). Follower: handling
        # one, whose success acknowledgement is not sent.
        self._commit_notice = False
        self._skip_ack = False
        # Leader: followers owed the current commit index, by when (time.monotonic()); the
        # log indexes each follower forwarded and waits for; set by a read point given out
        # while notices are owed (see _notify_commit).
        self._notice_due: dict[Any, float] = {}
        self._forwarded: dict[Any, deque[int]] = {}
        self._notices_urgent = False
        # Leader: the follower that forwarded the latest command gets append-entries first
        # (see _SyncObj__sendAppendEntries); the others' are held in _ae_hold meanwhile.
        self._ae_first: Any = None
        self._ae_hold: list[tuple[Any, dict[str, Any]]] | None = None
        # Messages of one kind held back during a tick (see _send_deferred).
        self._deferred: list[tuple[Any, dict[str, Any]]] | None = None
        self._defer_kind: str | None = None
        # Held by the tick thread except while it waits in poll() (see _TickPoller).
        self.tick_lock = threading.Lock()
        self._tick_ident: int | None = None
        self._stop = threading.Event()
        # Set after the first tick that loaded the snapshot (pysyncobj loads it there, not in
        # its constructor) and applied the journal up to the known commit index: before that
        # the state is empty or partial, and even a stale read must not see it.
        self.loaded = threading.Event()
        self._thread: threading.Thread | None = None
        self._synced_journal: _Journal | None = None
        self._journal: _Journal | None = None
        journal = os.path.join(config.data_dir, "raft.journal")
        conf = SyncObjConf(
            password=config.secret,
            autoTick=False,
            appendEntriesUseBatch=False,
            # Our own layer groups commands; big pysyncobj frames avoid its chunked
            # "transmission" path for large entries, whose last chunk can be cut short.
            appendEntriesBatchSizeBytes=2**23,
            appendEntriesPeriod=config.heartbeat_s,
            raftMinTimeout=config.raft_min_timeout,
            raftMaxTimeout=config.raft_max_timeout,
            leaderFallbackTimeout=config.leader_fallback_s,
            connectionTimeout=max(3.5, config.raft_max_timeout),
            # Reconnect quickly after a peer restarts or resumes (default 5 s).
            connectionRetryTime=0.3,
            bindAddress=config.self_address,
            bindRetryTime=0.2,
            maxBindRetries=10,
            journalFile=journal,
            fullDumpFile=os.path.join(config.data_dir, "raft.snapshot"),
            dynamicMembershipChange=True,
            logCompactionMinEntries=_staggered(config),
            logCompactionMinTime=config.compaction_min_time_s,
            useFork=False,  # serialize and checkSerializing are replaced (_take_snapshot)
            pollerType="poll",  # replaced by _TickPoller below
            onStateChanged=self._state_changed,
            commandsQueueSize=0,
            # Without a known leader, fail at once (RaftStore retries until its deadline)
            # instead of queueing: a queued command could commit long after its caller was
            # told it timed out.
            commandsWaitLeader=False,
            # pysyncobj recv()s this many bytes per call: a large value costs a large
            # allocation per read, so keep its default (64 KiB).
        )
        try:
            super().__init__(
                config.self_address,
                list(config.peers),
                conf,
                consumers=[self._holder],
                transportClass=_StampingTransport,
            )
        except SyncObjException as exc:
            raise StoreError(
                f"cannot bind the replica address {config.self_address}: {exc.errorCode}"
            ) from None
        if config.secret is not None:
            # No tick has run yet, so no connection exists: swap the cipher everywhere.
            secret = config.secret if isinstance(config.secret, bytes) else config.secret.encode()
            cipher = _FrameCipher(secret)
            self._SyncObj__encryptor = cipher
            for conn in self._SyncObj__transport._connections.values():
                conn.encryptor = cipher
            self.read_index_codec = ReadIndexCodec(cipher.key)
        endpoint = udp_endpoint(config.self_address)
        if endpoint is not None:
            try:
                self._ri_responder = ReadIndexResponder(
                    endpoint, self.read_index_codec, self.read_point_now
                )
            except OSError as exc:
                # Followers then time out once and keep to the TCP round: slower, still correct.
                logger.warning("read-index responder not started (UDP %s): %s", endpoint, exc)
        serializer = self._SyncObj__serializer
        serializer.serialize = self._take_snapshot
        serializer.checkSerializing = self._check_snapshot
        serializer.setTransmissionData = self._receive_snapshot_chunk
        self._poller.__class__ = _TickPoller
        self._poller.tick_lock = self.tick_lock
        self._poller.next_wait = self._next_wait
        # No tick has run yet, so the journal can be reopened as our kind.
        self._SyncObj__raftLog._destroy()  # type: ignore[has-type]
        self._journal = _Journal(journal, fsync=config.fsync)
        self._SyncObj__raftLog = self._journal
        if config.fsync:
            self._synced_journal = self._journal

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        # The snapshot writer waits for work from the start: started at the first snapshot,
        # the tick thread waited in Thread.start() for it to get the GIL and a core (25-40 ms
        # in bench.snapshot).
        self._start_snapshot_writer()
        self._thread = threading.Thread(
            target=self._run, name=f"raft-tick {self.config.self_address}", daemon=True
        )
        self._thread.start()
        if self._ri_responder is not None:
            self._ri_responder.start()

    def _run(self) -> None:
        self._tick_ident = threading.get_ident()
        tick_s = self.config.tick_s
        while not self._stop.is_set():
            failed = False
            with self.tick_lock:
                try:
                    # Never 0: _TickPoller recomputes a positive wait after the tick (a 0
                    # would poll without waiting and run a second, idle tick).
                    self.doTick(max(self._next_wait(), _TIMER_SLACK_S))
                    if not self.loaded.is_set() and not self._SyncObj__needLoadDumpFile:
                        self.loaded.set()
                except Exception:
                    # A failed tick must not kill the replica; pysyncobj's own loop does the same.
                    logger.exception("raft tick failed")
                    failed = True
            if failed:
                time.sleep(tick_s)
        with self.tick_lock:
            self._doDestroy()

    def _next_wait(self) -> float:
        """How long the next tick may sleep in poll(): until the next timer pysyncobj would act
        on. Messages, proposals (pipe) and ReadIndex requests (pipe) wake it earlier, so an idle
        replica wakes only for heartbeats (leader: to send them; follower: to receive them)."""
        wait = self._timer_wait()
        if self._applied_unannounced:
            # A deferred applied notice (see _flush_applied): a tick of its own only when none
            # came for another apply_notice_s (an extra wake-up costs the tick thread what the
            # notice saves).
            due = self._announce_not_before + self.config.apply_notice_s - time.monotonic()
            wait = min(wait, max(due + _TIMER_SLACK_S, 0.0))
        if self._notice_due:
            # Commit notices held back (see _notify_commit): due even while the wait above is
            # the short poll of a replica without connections.
            due = min(self._notice_due.values()) - time.monotonic()
            wait = min(wait, max(due + _TIMER_SLACK_S, 0.0))
        return wait

    def _timer_wait(self) -> float:
        config = self.config
        if not self._SyncObj__transport.ready or self._read_pending or self._read_waiting:
            return config.tick_s
        now = _raft_clock()
        if self._SyncObj__raftState == _RAFT_STATE.LEADER:
            deadline = self._SyncObj__newAppendEntriesTime
        else:
            deadline = self._SyncObj__raftElectionDeadline
        wait = deadline - now + _TIMER_SLACK_S
        # (set against set: no Node.__hash__ calls, pysyncobj's Python method)
        if not self._SyncObj__connectedNodes.issuperset(self._SyncObj__otherNodes):
            wait = min(wait, self._SyncObj__conf.connectionRetryTime)  # reconnect attempts
        return min(max(wait, 0.0), config.idle_wake_s)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop ticking, close connections and flush the journal (blocking)."""
        self._stop.set()
        try:
            self._pipe_wake()
        except OSError:
            pass
        if self._ri_responder is not None:
            self._ri_responder.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        writer = self._snapshot_writer
        if writer is not None:
            # A snapshot being written completes (it is as valid as any: the journal still
            # holds what it covers), so a replica restarted in this process finds it in place.
            self._snapshot_jobs.put(None)
            writer.join(timeout)
            if writer.is_alive():
                # Still writing: a replica restarted on this directory meanwhile may have a
                # newer snapshot in place (its own or the leader's) by the time this one is
                # done, so this one is dropped rather than renamed over it.
                with self._snapshot_rename_lock:
                    self._snapshot_superseded = True

    def _pipe_wake(self) -> None:
        notifier = getattr(self, "_SyncObj__pipeNotifier", None)
        if notifier is not None:
            notifier.notify()

    # --- the state machine ----------------------------------------------------------------------

    @property
    def kv(self) -> KVState:
        return self._holder.kv

    @replicated
    def apply_kv(self, command: bytes) -> Any:
        with self.state_lock:
            try:
                result = self._holder.kv.apply(command)
            except StoreError as exc:
                # Deterministic rejection (malformed command): every replica returns the same.
                result = exc
            except Exception as exc:
                # A bug in apply must not wedge the replica on this entry forever (pysyncobj
                # would retry it every tick); apply is deterministic, so all replicas agree.
                logger.exception("applying a command failed")
                result = StoreError(f"applying the command failed: {exc!r}")
        # Watchers are woken once per tick, after the tick's sends (_flush_applied): waking
        # trio here would have its thread take the GIL while the leader sends the commit
        # index to the followers, delaying every follower's acknowledgement.
        self._applied_unannounced = True
        return result

    def _take_snapshot(self, data: Any, idx: int) -> None:
        """pysyncobj's Serializer.serialize, on the tick thread: ``data`` is (consumers' data,
        last entry, the one before, cluster), with the live KVState in the holder's data. Takes
        a frozen view of it and hands the pickling and writing to the writer thread."""
        if self._snapshot_idx is not None:
            return  # one at a time (pysyncobj checks too)
        started = time.perf_counter()
        consumers, last, first_kept, cluster = data
        holder = consumers[1]
        holder["kv"] = holder["kv"].frozen_view()
        serializer = self._SyncObj__serializer
        # Non-zero while writing, as pysyncobj's child pid was: it does not send its snapshot
        # file to a lagging follower meanwhile.
        serializer._Serializer__pid = -3
        self._snapshot_idx = idx
        self._snapshot_done = self._snapshot_ok = self._snapshot_superseded = False
        self._snapshot_jobs.put(
            ((consumers, last, first_kept, cluster), serializer._Serializer__fileName)
        )
        if self._snapshot_writer is None:  # ticked without start() (tests tick by hand)
            self._start_snapshot_writer()
        self.last_snapshot_fork_s = time.perf_counter() - started
        logger.info(
            "snapshot at index %d: the tick thread spent %.1f ms, writing on",
            idx,
            self.last_snapshot_fork_s * 1e3,
        )

    def _start_snapshot_writer(self) -> None:
        self._snapshot_writer = threading.Thread(
            target=self._snapshot_writer_loop,
            name=f"raft-snapshot {self.config.self_address}",
            daemon=True,
        )
        self._snapshot_writer.start()

    def _snapshot_writer_loop(self) -> None:
        while True:
            job = self._snapshot_jobs.get()
            if job is None:
                return
            data, path = job
            ok = False
            try:
                ok = self._write_snapshot(data, path)
            except Exception:
                # The thread goes on: dead, every later snapshot would wait for it forever
                # (the log never compacted again).
                logger.exception("snapshot writer failed at index %s", self._snapshot_idx)
            finally:
                del job, data
                self._snapshot_ok = ok
                self._snapshot_done = True
                try:
                    self._pipe_wake()  # the tick thread compacts the log now, not at its next wake
                except OSError:
                    pass

    def _write_snapshot(self, data: Any, path: str) -> bool:
        with _snapshot_file_lock(path):
            return self._write_snapshot_file(data, path)

    def _write_snapshot_file(self, data: Any, path: str) -> bool:
        tmp = path + ".tmp"
        started = time.perf_counter()
        cpu = time.thread_time()
        data[0][1]["kv"].pause = _hand_over_gil
        try:
            with open(tmp, "wb") as f:
                with _SnapshotCodec.GzipFile(fileobj=f, mode="wb") as packed:
                    _pickle.dump(data, _GilYieldingWriter(packed), _PICKLE_PROTOCOL)
                if self.config.fsync:
                    # The journal is compacted once this reports success: the snapshot must
                    # be as durable as the entries it replaces.
                    f.flush()
                    os.fsync(f.fileno())
            with self._snapshot_rename_lock:
                if self._snapshot_superseded:
                    os.unlink(tmp)
                    logger.info(
                        "snapshot at index %s dropped: the leader's snapshot replaced the state",
                        self._snapshot_idx,
                    )
                    return False
                os.replace(tmp, path)
            if self.config.fsync:
                _fsync_path(os.path.dirname(os.path.abspath(path)))
            logger.info(
                "snapshot at index %s written: %d bytes in %.2f s (%.2f CPU-s)",
                self._snapshot_idx,
                os.path.getsize(path),
                time.perf_counter() - started,
                time.thread_time() - cpu,
            )
        except Exception:
            logger.exception("writing the snapshot at index %s failed", self._snapshot_idx)
            return False
        return True

    def _check_snapshot(self) -> tuple[int, int | None]:
        """pysyncobj's Serializer.checkSerializing, on the tick thread."""
        idx = self._snapshot_idx
        if idx is None:
            return SERIALIZER_STATE.NOT_SERIALIZING, None
        if not self._snapshot_done:
            return SERIALIZER_STATE.SERIALIZING, idx
        self._snapshot_idx = None
        serializer = self._SyncObj__serializer
        serializer._Serializer__pid = 0
        # Superseded after it was renamed into place: the log now follows the leader's
        # snapshot and must not be compacted to this one (the next snapshot covers it).
        ok = self._snapshot_ok and not self._snapshot_superseded
        if ok:
            # pysyncobj compacts the log to idx next: the next snapshot at this replica's phase.
            self._SyncObj__conf.logCompactionMinEntries = _next_compaction_threshold(self.config, idx)
            # Transfers to lagging followers start over from the new file, as pysyncobj's
            # checkSerializing did: a paused one would go on reading the old file, which no
            # longer follows on from the compacted log (the follower refuses it, and the whole
            # snapshot is sent again).
            for transmission in serializer._Serializer__transmissions.values():
                if "file" in transmission:
                    transmission["file"].close()
            serializer._Serializer__transmissions = {}
        return (SERIALIZER_STATE.SUCCESS if ok else SERIALIZER_STATE.FAILED), idx

    def _send_deferred(self) -> None:
        deferred = self._deferred
        self._deferred = self._defer_kind = None
        if deferred:
            transport = self._SyncObj__transport
            for node, message in deferred:
                transport.send(node, message)

    def _SyncObj__sendAppendEntries(self) -> None:  # noqa: N802 - pysyncobj's name
        # pysyncobj sends to the followers in set order (by address hash: random per process).
        # A write forwarded by a follower waits for that follower to hear of the entry and of
        # its commit; with the other follower served first, each costs an extra send
        # (~50 us here). So the latest forwarder goes first.
        if self._SyncObj__serializer._Serializer__pid != 0 and self._skip_snapshot_waiters():
            return
        first = self._ae_first
        if first is None or self._ae_hold is not None:
            _base_send_append_entries(self)
            return
        self._ae_hold = []
        try:
            _base_send_append_entries(self)
        finally:
            held, self._ae_hold = self._ae_hold, None
            transport = self._SyncObj__transport
            for node, message in held:
                transport.send(node, message)

    def _skip_snapshot_waiters(self) -> bool:
        """While a snapshot is written, pysyncobj has no snapshot to send to a follower that
        needs one (nextIndex at or before the log's start) and would send it empty ones
        ('serialized': None) in a loop for up to a heartbeat period per call: ~18,000 a second,
        the tick thread busy 100 ms at a time. Such followers get one per call instead (it
        keeps them from starting elections, as pysyncobj's first one did); the rest as usual.
        Returns False if no follower waits for a snapshot."""
        first = self._SyncObj__raftLog[0][1]
        next_index = self._SyncObj__raftNextIndex
        connected = self._SyncObj__connectedNodes
        waiting = [n for n in connected if next_index.get(n, first + 1) <= first]
        if not waiting:
            return False
        # pysyncobj passes over nodes it does not count as connected (tick thread only).
        connected.difference_update(waiting)
        try:
            self._SyncObj__sendAppendEntries()
        finally:
            connected.update(waiting)
        message = {
            "type": "append_entries",
            "term": self._SyncObj__raftCurrentTerm,
            "commit_index": self._SyncObj__raftCommitIndex,
            "serialized": None,
        }
        for node in waiting:
            self._SyncObj__transport.send(node, dict(message))
        return True

    def _SyncObj__applyLogEntries(self) -> bool:  # noqa: N802 - pysyncobj's name
        # Leader: tell the followers about a new commit index *before* applying it here (Raft
        # allows followers to apply committed entries in any order relative to the leader);
        # a follower's client waits for the follower's apply, not the leader's.
        presend = (
            self._SyncObj__raftState == _RAFT_STATE.LEADER
            and self._SyncObj__raftCommitIndex > self._SyncObj__raftLastApplied
            and self._SyncObj__transport.ready
        )
        if presend:
            self._notify_commit()
        need_send = _base_apply_entries(self)
        if self._defer_kind == "next_node_idx":
            self._send_deferred()  # follower: acknowledgements held back until applied
        return bool(need_send) and not presend

    def _notify_commit(self) -> None:
        """Leader, the commit index just advanced: tell the followers that wait for it now (one
        forwarded a write it covers, or a read point was given out meanwhile), the others with
        the next append-entries, or after commit_notice_s (see _send_due_notices)."""
        commit = self._SyncObj__raftCommitIndex
        delay = self.config.commit_notice_s
        due = time.monotonic() + delay
        urgent = []
        everyone = delay <= 0 or self._notices_urgent
        self._notices_urgent = False
        for node in self._SyncObj__otherNodes:
            forwarded = self._forwarded.get(node)
            waits = everyone
            while forwarded and forwarded[0] <= commit:
                forwarded.popleft()
                waits = True
            if waits:
                urgent.append(node)
            elif node not in self._notice_due:
                self._notice_due[node] = due
        if urgent:
            self._send_notices(urgent)

    def _send_notices(self, nodes: list[Any]) -> None:
        """Send the commit index to ``nodes`` in an append-entries without entries."""
        log = self._SyncObj__raftLog
        last_idx, last_term = log[-1][1], log[-1][2]
        next_index = self._SyncObj__raftNextIndex
        # Followers need not acknowledge it: it carries no entries, so the leader learns
        # nothing from a success; its heartbeats keep the lease.
        self._commit_notice = True
        try:
            if any(next_index.get(node) != last_idx + 1 for node in nodes):
                # Entries not sent to one of them yet (after a rejection, or a snapshot to
                # send): pysyncobj's own round to everyone sends what each one lacks.
                self._SyncObj__sendAppendEntries()
                return
            transport = self._SyncObj__transport
            term = self._SyncObj__raftCurrentTerm
            commit = self._SyncObj__raftCommitIndex
            for node in nodes:
                transport.send(node, {"type": "append_entries", "term": term,
                                      "commit_index": commit, "entries": [],
                                      "prevLogIdx": last_idx, "prevLogTerm": last_term})
        finally:
            self._commit_notice = False

    def _send_due_notices(self) -> None:
        """Leader: send the commit notices whose time came (all of them after a read point
        was given out: the reading follower waits to apply that far)."""
        due = self._notice_due
        if self._SyncObj__raftState != _RAFT_STATE.LEADER or not self._SyncObj__transport.ready:
            due.clear()
            self._notices_urgent = False
            return
        others = self._SyncObj__otherNodes
        for node in [n for n in due if n not in others]:
            # Removed from the cluster after its notice was due: no append-entries will ever
            # go to it (which is what clears the entry), and with it left here every tick sent
            # a round of append-entries to the others, thousands a second, until the leader's
            # lease starved and it stepped down after every `remove_member`.
            del due[node]
            self._forwarded.pop(node, None)
        if self._notices_urgent:
            self._notices_urgent = False
            nodes = list(due)
        else:
            now = time.monotonic()
            nodes = [node for node, when in due.items() if when <= now]
        if nodes:
            self._send_notices(nodes)

    def _flush_applied(self) -> None:
        if not self._applied_unannounced:
            return
        if self._on_applied is None:
            self._applied_unannounced = False
            return
        now = time.monotonic()
        if (
            now < self._announce_not_before
            and self._SyncObj__raftState != _RAFT_STATE.LEADER
            and not (self._applied_urgent is not None and self._applied_urgent())
        ):
            return  # a follower that announced moments ago (see apply_notice_s, _next_wait)
        self._applied_unannounced = False
        self._announce_not_before = now + self.config.apply_notice_s
        self._on_applied()

    def _checkCommandsToApply(self) -> None:  # noqa: N802 - pysyncobj's name
        leader = self._SyncObj__raftLeader
        if leader is not None and leader != self.selfNode and not self.isNodeConnected(leader):
            # pysyncobj would "forward" to a leader it has no connection to (after a crash,
            # until the election timeout): the message is dropped and the caller waits for a
            # leader change. Refuse instead; nothing was sent, so the caller may retry.
            self._refuse_queued_commands()
        elif self._SyncObj__raftState == _RAFT_STATE.LEADER and self._transfer is not None:
            # Raft thesis §3.10: a leader handing over appends nothing more, so that the target
            # can catch up; nothing was appended, so the caller retries (with the new leader).
            self._refuse_queued_commands(FAIL_REASON.NOT_LEADER)
        elif self._SyncObj__raftState == _RAFT_STATE.LEADER:
            # pysyncobj answers a forwarded command (its log index) before it sends the entry
            # to the followers; the answer is only needed before the entry commits, so send
            # the entries first: the replication round trip starts one send earlier.
            self._send_deferred()
            self._deferred, self._defer_kind = [], "apply_command_response"
            try:
                super()._checkCommandsToApply()
            finally:
                self._send_deferred()
        else:
            super()._checkCommandsToApply()
        self._flush_applied()  # pysyncobj has sent this tick's append-entries by now
        if self._read_requests or self._read_pending or self._read_waiting:
            self._serve_read_index()
        if self._synced_journal is not None:
            # The leader counts its own log toward the commit majority: durable first.
            self._synced_journal.sync()
        # A cluster of one commits on the next tick, which otherwise waits for the idle poll
        # timeout (no peer reply wakes it): wake it at once.
        if (
            not self._SyncObj__otherNodes
            and self._SyncObj__raftState == _RAFT_STATE.LEADER
            and self._SyncObj__raftCommitIndex < self._SyncObj__raftLog[-1][1]
        ):
            self._pipe_wake()

    def _refuse_queued_commands(self, reason: int = FAIL_REASON.MISSING_LEADER) -> None:
        queue = self._SyncObj__commandsQueue
        while True:
            try:
                _, callback = queue.get_nowait()
            except Empty:
                return
            self._SyncObj__callErrCallback(reason, callback)

    def _supersede_snapshot(self) -> None:
        """A snapshot sent by the leader is about to be put in place (called before pysyncobj's
        rename, see _receive_snapshot_chunk, and again before loading it): a snapshot of this
        replica's older state still being written must not replace it
        (on a restart the journal, cleared to the leader's snapshot, would not follow on from
        it), and the log must not be compacted to it. It is dropped, reported as failed."""
        with self._snapshot_rename_lock:
            if self._snapshot_idx is not None:
                self._snapshot_superseded = True

    def _receive_snapshot_chunk(self, data: Any) -> bool:
        """pysyncobj's Serializer.setTransmissionData, on the tick thread: with the last chunk
        it renames the leader's snapshot into place, and only then loads it. A snapshot of this
        replica's own being written must be superseded before that rename, or the writer could
        rename its older one over the leader's in between (see _supersede_snapshot)."""
        if isinstance(data, (tuple, list)) and len(data) == 3 and data[2]:
            self._supersede_snapshot()
        return _pysyncobj_serializer.Serializer.setTransmissionData(
            self._SyncObj__serializer, data
        )

    def _SyncObj__loadDumpFile(self, clearJournal: bool) -> None:  # noqa: N802, N803
        # A snapshot (at start or sent by the leader) replaces the state: wake the watchers.
        # The file is read once, here, outside the state lock (unpickling a full-size state
        # takes about a second), and pysyncobj's own read below is handed the same data.
        if clearJournal:
            self._supersede_snapshot()
        serializer = self._SyncObj__serializer
        try:
            data = serializer.deserialize()
        except Exception:
            data = None  # pysyncobj's own read fails the same way and logs why
        if data is not None:
            if not clearJournal:
                self._align_journal_to_snapshot(data)
            serializer.deserialize = lambda: data
        try:
            with self.state_lock:
                _base_load_dump(self, clearJournal)
        finally:
            serializer.__dict__.pop("deserialize", None)
        if self._on_applied is not None:
            self._on_applied()

    def _align_journal_to_snapshot(self, data: Any) -> None:
        """pysyncobj keeps the journal at start only if it begins with the snapshot's last two
        entries, and otherwise clears it to them, dropping every entry after the snapshot. A
        crash between writing a snapshot and compacting the journal leaves exactly that: a
        journal starting earlier. Drop only its prefix, so the tail survives."""
        log = self._SyncObj__raftLog
        first_kept = data[2]
        if len(log) < 2 or log[0] == first_kept:
            return
        k = first_kept[1] - log[0][1]
        if 0 < k < len(log) - 1 and log[k] == first_kept and log[k + 1] == data[1]:
            logger.warning(
                "journal starts before the snapshot (crash during compaction?): dropping %d "
                "entries already in the snapshot, keeping %d after it",
                k,
                len(log) - k - 2,
            )
            log.deleteEntriesTo(k)

    def propose(self, command: bytes, callback: Callable[[Any, int], None]) -> None:
        """Queue a command for the log (forwarded to the leader if this is a follower)."""
        self.apply_kv(command, callback=callback)

    def _applyCommand(self, command: bytes, callback: Any, commandType: int | None = None) -> None:  # noqa: N802, N803 - pysyncobj's names
        # pysyncobj queues the command and wakes the tick thread through a pipe, which then
        # forwards it to the leader (or, on the leader, appends and sends it). A thread hand-off
        # costs ~50-100 us on a write's path. When the tick thread is asleep in poll(), the
        # calling thread takes the tick lock and does that work itself; otherwise (the tick
        # thread is busy, or this *is* the tick thread) the command goes the usual way.
        if threading.get_ident() == self._tick_ident:
            # A command forwarded to this leader, read from a follower inside poll(): append
            # and send it now rather than after this poll round and the next tick's preamble.
            if self._SyncObj__raftState == _RAFT_STATE.LEADER and commandType is None:
                self._SyncObj__commandsQueue.put_nowait((command, callback))
                self._checkCommandsToApply()
            else:
                super()._applyCommand(command, callback, commandType)
            return
        if self._stop.is_set() or not self.tick_lock.acquire(blocking=False):
            super()._applyCommand(command, callback, commandType)
            return
        try:
            if commandType is not None:
                command = struct.pack("B", commandType) + command
            try:
                self._SyncObj__commandsQueue.put_nowait((command, callback))
            except Exception:  # the queue is unbounded (commandsQueueSize=0); be safe anyway
                super()._applyCommand(command, callback)
                return
            if self._SyncObj__transport.ready and self.selfNode is not None:
                self._checkCommandsToApply()
            else:
                self._pipe_wake()  # not started yet: the tick thread will take it
        finally:
            self.tick_lock.release()

    # --- leadership -----------------------------------------------------------------------------

    def _state_changed(self, old: int, new: int) -> None:
        self._notice_due.clear()
        self._forwarded.clear()
        if new != _RAFT_STATE.LEADER:
            self._lease_until = 0.0
        if old == _RAFT_STATE.LEADER:
            # Stepped down (no majority within leaderFallbackTimeout, or a higher term): what
            # this leader appended may be overwritten by the next one, or commit under it.
            self._fail_uncommitted()
        if self._on_state_changed is not None:
            self._on_state_changed()

    def _SyncObj__onLeaderChanged(self) -> None:  # noqa: N802 - pysyncobj's name
        # pysyncobj fails the forwarded commands still waiting for the leader's answer
        # (LEADER_CHANGED) when this replica starts an election or hears of another leader;
        # those the old leader had already answered with a log index stay until that index is
        # applied, which under a new leader may take long (until enough other writes fill
        # the log there) - their callers would wait out their whole timeout, as etcd's do not.
        _base_on_leader_changed(self)
        self._fail_uncommitted()

    def _fail_uncommitted(self) -> None:
        """Answer every command waiting for its entry to commit with LEADER_CHANGED (outcome
        unknown: the entry may still commit under the next leader, or be replaced)."""
        waiting = self._SyncObj__commandsWaitingCommit
        if not waiting:
            return
        callbacks = [cb for idx in sorted(waiting) for _, cb in waiting[idx]]
        waiting.clear()
        for callback in callbacks:
            if callable(callback):
                callback(None, FAIL_REASON.LEADER_CHANGED)

    # --- leadership transfer (Raft thesis §3.10) -------------------------------------------------

    def transfer_leadership(
        self, target: str | None, callback: Callable[[str | None, str | None], None]
    ) -> None:
        """Hand leadership to another member: ``target`` (an address), or else the connected
        member that holds the most of the log. Safe from any thread; ``callback(address,
        None)`` runs on the tick thread once this replica stepped down for the target's higher
        term, ``callback(None, why)`` if nothing was handed over.

        pysyncobj's own ``transferLeadership`` only sends TimeoutNow when the target already
        holds the whole log (else it refuses), keeps appending and claiming leadership
        meanwhile, and reports success when the message is sent. Here, as the thesis has it:
        the leader gives up its lease and stops appending first (commands are refused with
        NOT_LEADER, nothing appended: callers retry, then with the new leader), waits until
        everything it appended is committed and held by the target, sends TimeoutNow, and
        reports when a higher term deposed it. The target starts its election at once,
        without PreVote (the leader would say no), and voters that heard from the leader
        lately vote anyway (``transfer`` in the vote request): the leader no longer claims its
        lease, so no read can be served from a stale lease. If the target does not catch up in
        time, the leader resumes as before (TimeoutNow not sent: its lease is sound); if it is
        not elected in time after TimeoutNow, the leader steps down instead (a late election
        of the target could otherwise meet a lease it claimed again) and the cluster elects a
        leader as usual."""
        self._transfer_requests.append((target, callback))
        self._pipe_wake()

    def _drive_transfer(self) -> None:
        """Tick thread: start requested transfers and move the one under way along."""
        while self._transfer_requests:
            target, callback = self._transfer_requests.popleft()
            self._start_transfer(target, callback)
        transfer = self._transfer
        if transfer is None:
            return
        target = transfer.target
        if (
            self._SyncObj__raftState != _RAFT_STATE.LEADER
            or self._SyncObj__raftCurrentTerm != transfer.term
        ):
            self._transfer = None
            if transfer.sent and self._SyncObj__raftCurrentTerm > transfer.term:
                logger.info("leadership handed over to %s (term %d)", target.address,
                            self._SyncObj__raftCurrentTerm)
                transfer.callback(target.address, None)
            else:
                transfer.callback(None, "this replica lost its leadership during the hand-over "
                                        f"to {target.address} (no majority reachable)")
            return
        now = _raft_clock()
        election = self.config.raft_max_timeout
        if not transfer.sent:
            last = self._SyncObj__raftLog[-1][1]
            match = self._SyncObj__raftMatchIndex.get(target, 0)
            commit: int = self._SyncObj__raftCommitIndex  # type: ignore[has-type]
            if (
                commit >= last
                and match >= last
                and target in self._SyncObj__connectedNodes
                and target in self._SyncObj__otherNodes
            ):
                transfer.sent = True
                transfer.deadline = now + _TRANSFER_ELECTION_TIMEOUTS * election
                self._SyncObj__transport.send(
                    target, {"type": "timeout_now", "term": transfer.term}
                )
                logger.info("leadership transfer: %s holds the whole log (index %d), "
                            "TimeoutNow sent", target.address, last)
            elif now > transfer.deadline:
                self._transfer = None  # the lease comes back with the next acknowledgements
                behind = max(0, last - match)
                transfer.callback(
                    None, f"{target.address} did not catch up with the leader's log within "
                    f"{_TRANSFER_CATCH_UP_TIMEOUTS * election:.1f}s ({behind} entries behind"
                    f"{'' if target in self._SyncObj__connectedNodes else ', not connected'}); "
                    "leadership kept")
        elif now > transfer.deadline:
            self._transfer = None
            logger.warning("leadership transfer: %s not elected in time; stepping down",
                           target.address)
            self._SyncObj__raftLeader = None
            self._SyncObj__raftElectionDeadline = now + self._SyncObj__generateRaftTimeout()
            self._SyncObj__setState(_RAFT_STATE.FOLLOWER)
            transfer.callback(
                None, f"{target.address} was asked to take over but was not elected within "
                f"{_TRANSFER_ELECTION_TIMEOUTS * election:.1f}s; this replica stepped down and "
                "the members elect a leader as usual")

    def _start_transfer(
        self, address: str | None, callback: Callable[[str | None, str | None], None]
    ) -> None:
        if self._SyncObj__raftState != _RAFT_STATE.LEADER:
            callback(None, "this replica is not the Raft leader")
            return
        if self._transfer is not None:
            callback(None, "a leadership transfer is already under way")
            return
        others = list(self._SyncObj__otherNodes)
        if not others:
            callback(None, "no other member to hand leadership to (the only member)")
            return
        if address is not None:
            others = [n for n in others if n.address == address]
            if not others:
                callback(None, f"{address} is not a member")
                return
        connected = self._SyncObj__connectedNodes
        answered = self._SyncObj__lastResponseTime
        # Heard from within the shortest election timeout: alive, not just connected.
        fresh = _raft_clock() - self.config.raft_min_timeout
        live = [n for n in others if n in connected and answered.get(n, 0.0) > fresh]
        if not live:
            names = ", ".join(sorted(n.address for n in others))
            callback(None, f"no other member is connected and answering ({names})")
            return
        match = self._SyncObj__raftMatchIndex
        target = max(live, key=lambda n: (match.get(n, 0), n.address))
        term = self._SyncObj__raftCurrentTerm
        deadline = _raft_clock() + _TRANSFER_CATCH_UP_TIMEOUTS * self.config.raft_max_timeout
        self._transfer = _Transfer(target, callback, term, deadline)
        logger.info("leadership transfer to %s started (term %d, %d entries behind)",
                    target.address, term, max(0, self._SyncObj__raftLog[-1][1] - match.get(target, 0)))
        # Nothing is appended from now on; what is queued is refused (see _checkCommandsToApply).
        self._refuse_queued_commands(FAIL_REASON.NOT_LEADER)

    def _on_timeout_now(self, node: Any, message: dict[str, Any]) -> None:
        # The current leader asks this replica to start an election now (it holds the leader's
        # whole log). pysyncobj's handler sets the election deadline to now and keeps the
        # leader's heartbeats from postponing it; the vote requests carry "transfer".
        term = self._SyncObj__raftCurrentTerm
        if (
            self._SyncObj__raftState == _RAFT_STATE.FOLLOWER
            and message.get("term") == term
            and node == self._SyncObj__raftLeader
        ):
            self._transfer_term = term + 1
            _base_on_message(self, node, message)

    @property
    def is_raft_leader(self) -> bool:
        return self._SyncObj__raftState == _RAFT_STATE.LEADER

    def has_lease(self) -> bool:
        """Raft leader holding a quorum lease right now (safe to call from any thread)."""
        if not self._SyncObj__otherNodes:
            return self._SyncObj__raftState == _RAFT_STATE.LEADER  # a cluster of one
        return (
            self._SyncObj__raftState == _RAFT_STATE.LEADER
            and self._transfer is None  # handing over: another leader may be elected at once
            and self._lease_term == self._SyncObj__raftCurrentTerm
            and time.monotonic() < self._lease_until
        )

    def lease_remaining(self) -> float:
        return max(0.0, self._lease_until - time.monotonic()) if self.has_lease() else 0.0

    def can_read_locally(self) -> bool:
        """Leader with a lease that has applied everything it committed, including an entry of
        its own term (so no earlier leader's committed write can be missing)."""
        if not self.has_lease():
            return False
        applied = self._SyncObj__raftLastApplied
        noop = self._SyncObj__noopIDx
        return noop is not None and applied >= noop and applied >= self._SyncObj__raftCommitIndex

    def _record_ack(self, node: Any, echo: Any) -> None:
        term = self._SyncObj__raftCurrentTerm
        if self._SyncObj__raftState != _RAFT_STATE.LEADER or not isinstance(echo, tuple):
            return
        if echo[0] != term:
            return
        if self._acks_term != term:
            self._acks = {}
            self._acks_term = term
        if echo[1] > self._acks.get(node, 0.0):
            self._acks[node] = echo[1]
        others = self._SyncObj__otherNodes
        needed = (len(others) + 1) // 2  # acks from others that, with ours, make a majority
        stamps = sorted((self._acks.get(n, 0.0) for n in others), reverse=True)
        oldest_needed = stamps[needed - 1] if needed else float("inf")
        self._lease_until = oldest_needed + self.config.lease_s
        self._lease_term = term

    # --- ReadIndex (Raft thesis §6.4) ----------------------------------------------------------

    def read_point_now(self) -> int | None:
        """The commit index if it is a linearizable read point right now (leader of the term it
        was read in, holding the lease, an entry of that term committed), else None. Safe on
        any thread: the index is read first, the leadership checked after it (see
        raftstore._readindex for why that order makes the answer valid)."""
        term = self._SyncObj__raftCurrentTerm
        commit = self._SyncObj__raftCommitIndex
        noop = self._SyncObj__noopIDx
        if noop is None or commit < noop:
            return None
        if not self.has_lease() or self._SyncObj__raftCurrentTerm != term:
            return None
        if self._notice_due:
            # The reader waits to apply this far: have the tick thread send the commit notices
            # it holds back now.
            self._notices_urgent = True
            self._pipe_wake()
        return commit

    def leader_read_endpoint(self) -> tuple[str, int] | None:
        """Where to ask the leader for a read point over UDP: its (ip, port) while this replica
        is a follower connected to a known leader, else None."""
        leader = self._SyncObj__raftLeader
        if (
            leader is None
            or leader == self.selfNode
            or self._SyncObj__raftState == _RAFT_STATE.LEADER
            or not self.isNodeConnected(leader)
        ):
            return None
        return udp_endpoint(leader.address)

    def read_index(self, callback: Callable[[bool], None]) -> None:
        """Ask the leader for its commit index and call ``callback(True)`` (on the tick thread)
        once this replica has applied that far: a linearizable read point without a log entry.
        ``callback(False)``: no answer (no leader, no lease, lost): use a barrier through the log.
        Safe to call from any thread; concurrent requests share one round trip."""
        self._read_requests.append(callback)
        if self._stop.is_set() or not self.tick_lock.acquire(blocking=False):
            self._pipe_wake()
            return
        try:  # the tick thread sleeps: ask the leader from here (see _applyCommand)
            if self._SyncObj__transport.ready:
                self._serve_read_index()
            else:
                self._pipe_wake()
        finally:
            self.tick_lock.release()

    def _serve_read_index(self) -> None:
        now = time.monotonic()
        if self._read_requests:
            callbacks = []
            while self._read_requests:
                callbacks.append(self._read_requests.popleft())
            leader = self._SyncObj__raftLeader
            if (
                self._SyncObj__raftState == _RAFT_STATE.LEADER
                or leader is None
                or leader == self.selfNode
                or not self.isNodeConnected(leader)
            ):
                for callback in callbacks:
                    callback(False)
            else:
                self._read_seq += 1
                self._read_pending[self._read_seq] = (now, callbacks)
                self._SyncObj__transport.send(leader, {"type": "read_index", "id": self._read_seq})
        # Answers lost with a connection, or from a leader that died: give up after about an
        # election (the caller falls back to the log).
        limit = now - self.config.raft_max_timeout
        for rid in [r for r, (sent, _) in self._read_pending.items() if sent < limit]:
            for callback in self._read_pending.pop(rid)[1]:
                callback(False)
        if self._read_waiting:
            applied = self._SyncObj__raftLastApplied
            waiting = []
            for index, sent, callbacks in self._read_waiting:
                if applied >= index or sent < limit:
                    for callback in callbacks:
                        callback(applied >= index)
                else:
                    waiting.append((index, sent, callbacks))
            self._read_waiting = waiting

    def _on_read_index(self, node: Any, message: dict[str, Any]) -> None:
        # The leader's commit index is a valid read point only while no other leader can exist
        # (the lease) and once an entry of its own term is committed (so it covers everything
        # earlier leaders committed).
        noop = self._SyncObj__noopIDx
        commit = self._SyncObj__raftCommitIndex
        ok = self.has_lease() and noop is not None and commit >= noop
        if ok and node in self._notice_due:
            self._send_notices([node])  # the reader waits to apply this far
        self._SyncObj__transport.send(node, {"type": "read_index_response", "id": message.get("id"),
                                             "index": commit if ok else None})

    def _on_read_index_response(self, node: Any, message: dict[str, Any]) -> None:
        entry = self._read_pending.pop(message.get("id"), None)  # type: ignore[arg-type]
        if entry is None:
            return
        sent, callbacks = entry
        index = message.get("index")
        if not isinstance(index, int):
            for callback in callbacks:
                callback(False)
        elif self._SyncObj__raftLastApplied >= index:
            for callback in callbacks:
                callback(True)
        else:
            self._read_waiting.append((index, sent, callbacks))

    # --- elections: drain first, then PreVote -------------------------------------------------

    def _onTick(self, timeToWait: float = 0.0) -> None:  # noqa: N802, N803 - pysyncobj's names
        if self._transfer is not None or self._transfer_requests:
            self._drive_transfer()
        if (
            self._SyncObj__raftState in (_RAFT_STATE.FOLLOWER, _RAFT_STATE.CANDIDATE)
            and self.selfNode is not None
            and self._SyncObj__raftElectionDeadline < _raft_clock()
            and self._SyncObj__transport.ready
        ):
            # pysyncobj checks the election deadline before reading the sockets: after this
            # thread was held up (a long apply, the GIL, a loaded host) it would start an
            # election while the leader's heartbeats sit unread. Read them first.
            self._poller.poll(0)
            if (
                self._SyncObj__raftState in (_RAFT_STATE.FOLLOWER, _RAFT_STATE.CANDIDATE)
                and self._SyncObj__raftElectionDeadline < _raft_clock()
                # The leader asked for this election (TimeoutNow): no PreVote, it would refuse.
                and self._transfer_term != self._SyncObj__raftCurrentTerm + 1
                and not self._prevote_won()
            ):
                self._start_prevote()
        if self._notice_due:
            self._send_due_notices()
        super()._onTick(timeToWait)
        # Entries applied while the transport was not ready (no _checkCommandsToApply call).
        self._flush_applied()

    def _prevote_won(self) -> bool:
        """Whether a majority granted this replica's latest PreVote (consumed by the election
        pysyncobj then starts)."""
        others = self._SyncObj__otherNodes
        if not others:
            return True
        if len(self._prevote_grants) + 1 > (len(others) + 1) / 2 and self._prevote_term == (
            self._SyncObj__raftCurrentTerm + 1
        ):
            self._prevote_grants = set()
            self._prevote_term = -1
            return True
        return False

    def _start_prevote(self) -> None:
        """Raft thesis §9.6 (PreVote): ask whether the others would vote before raising the
        term. A replica that merely missed heartbeats (it was starved, or briefly cut off) then
        cannot depose a healthy leader by a higher-term vote request."""
        term = self._SyncObj__raftCurrentTerm + 1
        self._prevote_term = term
        self._prevote_grants = set()
        self._SyncObj__raftElectionDeadline = _raft_clock() + self._SyncObj__generateRaftTimeout()
        self.prevotes_started += 1
        message = {
            "type": "pre_vote",
            "term": term,
            "last_log_index": self._SyncObj__getCurrentLogIndex(),
            "last_log_term": self._SyncObj__getCurrentLogTerm(),
        }
        for node in self._SyncObj__otherNodes:
            self._SyncObj__transport.send(node, message)

    def _on_pre_vote(self, node: Any, message: dict[str, Any]) -> None:
        term = message.get("term", -1)
        granted = (
            term > self._SyncObj__raftCurrentTerm
            and not self._refuses_votes()
            # A leader that a majority acknowledged within the lease is alive: no election.
            and not self.has_lease()
            and (message.get("last_log_term", -1), message.get("last_log_index", -1))
            >= (self._SyncObj__getCurrentLogTerm(), self._SyncObj__getCurrentLogIndex())
        )
        self._SyncObj__transport.send(node, {"type": "pre_vote_response", "term": term,
                                             "granted": granted})

    def _on_pre_vote_response(self, node: Any, message: dict[str, Any]) -> None:
        if not message.get("granted") or message.get("term") != self._prevote_term:
            return
        if self._SyncObj__raftState not in (_RAFT_STATE.FOLLOWER, _RAFT_STATE.CANDIDATE):
            return
        self._prevote_grants.add(node)
        if len(self._prevote_grants) + 1 > (len(self._SyncObj__otherNodes) + 1) / 2:
            # Won: let pysyncobj's election start on this very tick.
            self._SyncObj__raftElectionDeadline = 0.0

    # --- message interception -------------------------------------------------------------------

    # Messages handled here entirely, by method name: PreVote, ReadIndex and append_entries.
    _OWN_HANDLERS = {
        "append_entries": "_on_append_entries",
        "pre_vote": "_on_pre_vote",
        "pre_vote_response": "_on_pre_vote_response",
        "read_index": "_on_read_index",
        "read_index_response": "_on_read_index_response",
        "timeout_now": "_on_timeout_now",
    }

    def _SyncObj__onMessageReceived(self, node: Any, message: dict[str, Any]) -> None:  # noqa: N802
        kind = message.get("type")
        handler = self._OWN_HANDLERS.get(kind)  # type: ignore[arg-type]
        if handler is not None:
            getattr(self, handler)(node, message)
            return
        if kind == "apply_command":
            self._ae_first = node
        if kind == "request_vote" and self._refuses_votes() and not message.get("transfer"):
            self.votes_refused += 1
            return
        if kind == "next_node_idx":
            self._record_ack(node, message.get("lease_echo"))
            _base_on_message(self, node, message)
            if self._SyncObj__raftState == _RAFT_STATE.LEADER:
                self._advance_commit()
            return
        _base_on_message(self, node, message)

    def _advance_commit(self) -> None:
        """Leader, on an acknowledgement: commit (and notify the followers, then apply) at
        once, instead of after this poll round -- which may first read the other followers'
        acknowledgements -- and the next tick's preamble. Raft §5.3/§5.4.2: the highest index
        stored on a majority, if its entry is of the current term; pysyncobj's own tick
        computes the same and then finds nothing left to do."""
        log = self._SyncObj__raftLog
        last = log[-1][1]
        commit: int = self._SyncObj__raftCommitIndex  # type: ignore[has-type]
        if commit >= last:
            return
        match = self._SyncObj__raftMatchIndex
        others = self._SyncObj__otherNodes
        indexes = sorted([last, *(match.get(n, 0) for n in others)], reverse=True)
        majority = min(indexes[(len(others) + 1) // 2], last)
        first = log[0][1]
        if majority <= commit or majority < first:
            return
        if log[majority - first][2] != self._SyncObj__raftCurrentTerm:
            return
        self._SyncObj__raftCommitIndex = majority
        log.setRaftCommitIndex(majority)
        self._SyncObj__applyLogEntries()

    def _refuses_votes(self) -> bool:
        # Raft thesis §4.2.3: a server that heard from a leader within the minimum election
        # timeout ignores vote requests; this is what makes the leader's lease safe. It also
        # holds for that long after start (we may have heard from a leader before a restart).
        if self._SyncObj__raftState != _RAFT_STATE.FOLLOWER:
            return False
        last = max(self._leader_contact, self._started_at)
        return time.monotonic() - last < self.config.vote_refusal_s

    def _on_append_entries(self, node: Any, message: dict[str, Any]) -> None:
        for response in message.pop("responses", None) or ():
            # Answers to commands this follower forwarded (see _StampingTransport.send): the
            # very message pysyncobj would have sent on its own, handled the same way.
            if isinstance(response, dict) and response.get("type") == "apply_command_response":
                _base_on_message(self, node, response)
        if message["term"] < self._SyncObj__raftCurrentTerm or self.selfNode is None:
            _base_on_message(self, node, message)  # ignored by pysyncobj (stale leader)
            return
        self._leader_contact = time.monotonic()
        if message.get("entries"):
            if self._defer_kind == "next_node_idx":
                self._send_deferred()  # keep acknowledgements in order
        elif (
            self._deferred is None
            and "prevLogIdx" in message
            and message["commit_index"] > self._SyncObj__raftLastApplied
        ):
            # A commit-only message: its acknowledgement matters to nobody's latency, while
            # the client of a write waits for this apply. Acknowledge right after applying.
            self._deferred, self._defer_kind = [], "next_node_idx"
        self._echo = message.get("lease_stamp")
        self._skip_ack = bool(message.get("no_ack")) and not message.get("entries")
        try:
            verified = self._trim_matching(message)
            if verified is None:
                _base_on_message(self, node, message)
            elif isinstance(verified, dict):
                _base_on_message(self, node, verified)
            else:
                # Nothing new and our log extends past what the leader verified: process the
                # heartbeat (term, leader, commit up to the verified point) without pysyncobj's
                # truncation, then acknowledge exactly the verified prefix.
                header = {
                    "type": "append_entries",
                    "term": message["term"],
                    "commit_index": min(message["commit_index"], verified),
                }
                _base_on_message(self, node, header)
                self._SyncObj__sendNextNodeIdx(node, nextNodeIdx=verified + 1, success=True)
        finally:
            self._echo = None
            self._skip_ack = False
        if (
            self._SyncObj__raftState == _RAFT_STATE.FOLLOWER
            and self._SyncObj__raftCommitIndex > self._SyncObj__raftLastApplied
        ):
            # Apply what the leader just committed now, not after this poll round and the
            # next tick's preamble: the client of a write forwarded by this follower waits.
            self._SyncObj__applyLogEntries()

    def _trim_matching(self, message: dict[str, Any]) -> dict[str, Any] | int | None:
        """Raft §5.3: "If an existing entry conflicts with a new one (same index but different
        terms), delete the existing entry and all that follow it" -- only then.

        Returns None to pass the message on unchanged, a rewritten message without the entries
        we already hold, or an int: the last index the leader verified when the message brings
        nothing new but our log goes further (then the caller must not let pysyncobj truncate).
        """
        if "prevLogIdx" not in message or "transmission" in message:
            return None
        log = self._SyncObj__raftLog
        first = log[0][1]
        last = log[-1][1]
        prev_idx = message["prevLogIdx"]
        prev_term = message["prevLogTerm"]
        if prev_idx is None or prev_idx < first or prev_idx >= last:
            return None  # pysyncobj cannot truncate here (or rejects and resets)
        if log[prev_idx - first][2] != prev_term:
            return None  # mismatch at prev: pysyncobj rejects without truncating
        entries = message.get("entries") or []
        i = 0
        while i < len(entries):
            idx, term = entries[i][1], entries[i][2]
            if idx > last or log[idx - first][2] != term:
                break
            prev_idx, prev_term = idx, term
            i += 1
        if i < len(entries):
            if entries[i][1] <= self._SyncObj__raftLastApplied:
                self.applied_truncations += 1
                logger.error(
                    "leader %s conflicts with applied entry %d: state may have diverged",
                    message.get("term"),
                    entries[i][1],
                )
            if i == 0:
                return None
            trimmed = dict(message)
            trimmed["prevLogIdx"] = prev_idx
            trimmed["prevLogTerm"] = prev_term
            trimmed["entries"] = entries[i:]
            return trimmed
        if prev_idx == last:
            trimmed = dict(message)
            trimmed["prevLogIdx"] = prev_idx
            trimmed["prevLogTerm"] = prev_term
            trimmed["entries"] = []
            return trimmed
        return prev_idx

    # --- status ---------------------------------------------------------------------------------

    def snapshot_status(self) -> dict[str, Any]:
        """Raft-level facts for ``status()`` (racy reads of tick-thread data, good enough)."""
        leader = self._SyncObj__raftLeader
        now = time.monotonic()
        members: dict[str, dict[str, Any]] = {}
        is_leader = self.is_raft_leader
        match = dict(self._SyncObj__raftMatchIndex) if is_leader else {}
        acks = dict(self._acks) if is_leader else {}
        for node in list(self._SyncObj__otherNodes):
            ack = acks.get(node)
            members[node.address] = {
                "match_index": match.get(node) if is_leader else None,
                "last_contact_s": round(now - ack, 4) if ack else None,
                "connected": self.isNodeConnected(node),
            }
        return {
            "address": self.selfNode.address,
            "leader": leader.address if leader is not None else None,
            "term": self._SyncObj__raftCurrentTerm,
            "commit_index": self._SyncObj__raftCommitIndex,
            "applied_index": self._SyncObj__raftLastApplied,
            "log_length": len(self._SyncObj__raftLog),
            "log_first_index": self._SyncObj__raftLog[0][1],
            "raft_leader": is_leader,
            "has_quorum_lease": self.has_lease(),
            "peers": members,
            "applied_truncations": self.applied_truncations + _TruncationCounter.count,
            "last_snapshot_fork_ms": round(self.last_snapshot_fork_s * 1e3, 1),
        }
