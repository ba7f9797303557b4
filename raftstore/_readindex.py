"""ReadIndex over UDP: a follower's linearizable read point in one datagram each way.

The ReadIndex round of :mod:`raftstore._replica` travels on pysyncobj's connections, which
belong to each replica's tick thread: the follower's trio thread sends the request (under the
tick lock), the leader's tick thread answers it when it next reads its sockets (after whatever
apply or send it is busy with), and the follower's tick thread hands the answer to its trio
thread. Measured at 400 nodes / 12,000 pods (load ~3.5 on 2 cores), a follower's round took
> 25 ms in 15-21 % of rounds; of a slow round, the leader's busy tick thread cost ~12-20 ms on
average and the follower's tick-thread hand-off ~8-10 ms.

Here each replica also binds its own address (host and port) for UDP, and a responder thread
blocked in ``recvfrom`` answers a request with the replica's read point: its commit index if it
is the leader, holds its quorum lease and has committed an entry of its term (else "refused").
A follower's trio thread sends the request and reads the answer itself, so the round needs the
leader's responder and the follower's event loop, and neither tick thread.

Why the answer is a valid read point (Raft thesis §6.4, the same rule as the TCP round): the
request is sent after the read began; the responder reads the commit index, then checks that
this replica is still leader of the term it read it in and holds the lease. A leader advances
its commit index before any replica acknowledges the write that index covers, and the lease
(``Replica.has_lease``: a majority will refuse to vote for ``vote_refusal_s`` > lease) means no
other leader can exist at the moment of the check, hence none committed anything between the
read of the index and the check; an entry of its own term committed covers every write earlier
leaders acknowledged. The follower then serves the read once it has applied that far.

Frames. With the cluster secret, requests and answers are sealed with AES-256-GCM under a key
derived from the frame key (the direction is authenticated data, so a request cannot pass for
an answer, and nothing else can pass for either); without it (loopback only), they are plain,
as pysyncobj's own connections are then. An answer names the requester's random 64-bit
nonce: a forged or replayed answer is ignored unless its nonce is guessed. A lost datagram or
an unreachable responder (an old replica, UDP filtered) costs one timeout, then the TCP round
is used, and UDP is left alone for a while after repeated timeouts.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import socket
import struct
import threading
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._nonces import Nonces

__all__ = ["ReadIndexCodec", "ReadIndexResponder", "udp_endpoint"]

logger = logging.getLogger("raftstore.readindex")

_REQUEST = b"edgeplane read-index request v1"
_ANSWER = b"edgeplane read-index answer v1"
# Leading tag of an unsealed (no secret) request and answer.
_PLAIN_TAG = {_REQUEST: b"RQ", _ANSWER: b"RA"}
# nonce (8 bytes), then in an answer the read point (-1: refused)
_ANSWER_BODY = struct.Struct(">8sq")
# Largest datagram either side reads: requests and answers are < 64 bytes sealed.
MAX_DATAGRAM = 256


def udp_endpoint(address: str) -> tuple[str, int] | None:
    """(ip, port) of a ``host:port`` replica address whose host is an IPv4 literal, else None
    (a name would need a blocking lookup on the event loop; such clusters use the TCP round)."""
    host, _, port = address.rpartition(":")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version != 4:
        return None
    return str(ip), int(port)


class ReadIndexCodec:
    """Seals and opens read-index datagrams (plain without a key). Thread-safe."""

    def __init__(self, frame_key: bytes | None) -> None:
        self._aead = None
        if frame_key is not None:
            # A key of its own, derived from the frame key: the two uses never share one.
            key = hmac.new(frame_key, b"edgeplane read-index key", hashlib.sha256).digest()
            self._aead = AESGCM(key)
        self._nonce = Nonces().next  # GCM nonces must never repeat under a key

    def _seal(self, kind: bytes, body: bytes) -> bytes:
        if self._aead is None:
            return _PLAIN_TAG[kind] + body
        nonce = self._nonce()
        return nonce + self._aead.encrypt(nonce, body, kind)

    def _open(self, kind: bytes, data: bytes) -> bytes | None:
        if self._aead is None:
            return data[2:] if data[:2] == _PLAIN_TAG[kind] else None
        if len(data) < 12 + 16:
            return None
        try:
            return self._aead.decrypt(data[:12], data[12:], kind)
        except InvalidTag:
            return None

    def request(self, nonce: bytes) -> bytes:
        return self._seal(_REQUEST, nonce)

    def open_request(self, data: bytes) -> bytes | None:
        """The request's nonce, or None for anything that is not a valid request."""
        body = self._open(_REQUEST, data)
        return body if body is not None and len(body) == 8 else None

    def answer(self, nonce: bytes, index: int | None) -> bytes:
        return self._seal(_ANSWER, _ANSWER_BODY.pack(nonce, -1 if index is None else index))

    def open_answer(self, data: bytes) -> tuple[bytes, int | None] | None:
        """(nonce, read point or None if refused), or None for anything else."""
        body = self._open(_ANSWER, data)
        if body is None or len(body) != _ANSWER_BODY.size:
            return None
        nonce, index = _ANSWER_BODY.unpack(body)
        return nonce, (None if index < 0 else index)


class ReadIndexResponder:
    """A thread answering read-index requests on the replica's own address (UDP).

    ``read_point()`` is called on this thread for each valid request: it must be thread-safe
    and quick (see ``Replica.read_point_now``)."""

    def __init__(
        self, endpoint: tuple[str, int], codec: ReadIndexCodec, read_point: Callable[[], int | None]
    ) -> None:
        self._codec = codec
        self._read_point = read_point
        self._stopping = False
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.bind(endpoint)
        except OSError:
            self._sock.close()
            raise
        self._thread = threading.Thread(
            target=self._run, name=f"read-index {endpoint[0]}:{endpoint[1]}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        sock, codec, read_point = self._sock, self._codec, self._read_point
        while not self._stopping:
            try:
                data, peer = sock.recvfrom(MAX_DATAGRAM)
            except OSError:
                if self._stopping:
                    break
                continue  # e.g. an ICMP error reported for an earlier answer
            nonce = codec.open_request(data)
            if nonce is None:
                continue
            try:
                index = read_point()
            except Exception:  # a bug must not kill the responder: refuse, log
                logger.exception("read point failed")
                index = None
            try:
                sock.sendto(codec.answer(nonce, index), peer)
            except OSError:
                pass  # the requester times out and uses the TCP round
        sock.close()

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping = True
        try:
            # Wake the blocked recvfrom (closing the socket under it does not, on Linux).
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as waker:
                waker.sendto(b"", self._sock.getsockname())
        except OSError:
            pass
        if self._thread.is_alive():
            self._thread.join(timeout)
        else:
            self._sock.close()
