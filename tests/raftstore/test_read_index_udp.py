"""ReadIndex over UDP (raftstore._readindex): the leader's responder answers with a valid read
point only while it leads; followers read through it, ignore answers they cannot
authenticate, and fall back to the TCP round when UDP gets no (valid) answer."""

from __future__ import annotations

import os
import socket

import pytest
import trio
from helpers import running_cluster

from raftstore._localcluster import LocalCluster
from raftstore._readindex import ReadIndexCodec, udp_endpoint
from raftstore._replica import _FrameCipher


def _codec(secret: bytes) -> ReadIndexCodec:
    return ReadIndexCodec(_FrameCipher(secret).key)


# --- frames (pure logic) -----------------------------------------------------------------------


def test_sealed_answers_open_only_with_the_same_secret():
    ours, theirs = _codec(b"cluster secret one"), _codec(b"cluster secret two")
    nonce = os.urandom(8)
    assert ours.open_answer(ours.answer(nonce, 42)) == (nonce, 42)
    assert ours.open_answer(ours.answer(nonce, None)) == (nonce, None)
    assert ours.open_answer(theirs.answer(nonce, 42)) is None
    # an unsealed answer (what a replica without a secret sends) is not accepted either
    assert ours.open_answer(ReadIndexCodec(None).answer(nonce, 42)) is None


def test_a_request_never_passes_for_an_answer_nor_the_reverse():
    for codec in (_codec(b"cluster secret one"), ReadIndexCodec(None)):
        nonce = os.urandom(8)
        request = codec.request(nonce)
        assert codec.open_request(request) == nonce
        assert codec.open_answer(request) is None
        assert codec.open_request(codec.answer(nonce, 7)) is None
        assert codec.open_request(b"") is None and codec.open_answer(b"\x00" * 40) is None


def test_tampered_sealed_answer_is_rejected():
    codec = _codec(b"cluster secret one")
    frame = bytearray(codec.answer(os.urandom(8), 1000))
    frame[-20] ^= 1
    assert codec.open_answer(bytes(frame)) is None


def test_only_ipv4_literal_addresses_use_udp():
    assert udp_endpoint("127.0.63.1:23500") == ("127.0.63.1", 23500)
    assert udp_endpoint("localhost:23500") is None
    assert udp_endpoint("[::1]:23500") is None


# --- real replica processes --------------------------------------------------------------------


async def _ask(codec: ReadIndexCodec, address: str) -> int | None:
    """One UDP read-index round from this process, as a follower does it."""
    endpoint = udp_endpoint(address)
    assert endpoint is not None
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", 0))
        nonce = os.urandom(8)
        await sock.sendto(codec.request(nonce), endpoint)
        with trio.fail_after(5):
            while True:
                data, peer = await sock.recvfrom(256)
                answer = codec.open_answer(data)
                if answer is not None and answer[0] == nonce:
                    assert peer == endpoint
                    return answer[1]


@pytest.mark.slow
async def test_leader_answers_a_read_point_covering_acknowledged_writes(tmp_path):
    async with running_cluster(tmp_path, 3) as cluster:
        leader = await cluster.wait_leader()
        follower = await cluster.follower()
        codec = _codec(cluster.secret)
        async with leader.client() as client:
            for i in range(20):
                await client.call("put", "/ri/udp", str(i).encode())
                acked = (await leader.call("status"))["commit_index"]
                point = await _ask(codec, leader.address)
                assert point is not None and point >= acked
        # a follower is not a source of read points
        assert await _ask(codec, follower.address) is None
        # and a request sealed with another secret gets no answer at all
        with pytest.raises(trio.TooSlowError):
            with trio.fail_after(0.5):
                await _ask(_codec(b"some other secret!"), leader.address)


@pytest.mark.slow
async def test_follower_reads_go_over_udp_and_see_the_latest_write(tmp_path):
    async with running_cluster(tmp_path, 3) as cluster:
        leader = await cluster.wait_leader()
        follower = await cluster.follower()
        async with leader.client() as writer, follower.client() as reader:
            for i in range(50):
                await writer.call("put", "/ri/k", str(i).encode())
                kv = await reader.call("get", "/ri/k", True)
                assert kv is not None and kv[1] == str(i).encode()
                # a range waits for its read point in the calling task (RaftStore.barrier)
                kvs, _, _ = await reader.call("range", "/ri/", 0, True)
                assert [kv[1] for kv in kvs] == [str(i).encode()]
        points = (await follower.call("status"))["read_points"]
        assert points["udp"] >= 80 and points["udp"] > points["tcp"], points


@pytest.mark.slow
async def test_forged_udp_answers_are_ignored_and_reads_fall_back_to_tcp(tmp_path):
    """Something else holds the replicas' UDP ports (so no responder starts) and answers every
    request with read point 0 -- which would let a follower serve a stale value -- sealed with
    the wrong key, or unsealed. Followers must ignore those, time out, and read through the TCP
    round: every read still sees the write acknowledged before it."""
    cluster = LocalCluster(tmp_path, 3)
    right = _codec(cluster.secret)  # to learn the nonce: the worst case for the follower
    forgers = [ReadIndexCodec(None), _codec(b"not the cluster secret")]
    squatters = []
    for address in cluster.addresses:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await sock.bind(udp_endpoint(address))
        squatters.append(sock)
    requests = 0

    async def forge(sock: trio.socket.SocketType) -> None:
        nonlocal requests
        while True:
            data, peer = await sock.recvfrom(256)
            nonce = right.open_request(data)
            if nonce is not None:
                requests += 1
                for codec in forgers:
                    await sock.sendto(codec.answer(nonce, 0), peer)

    try:
        async with trio.open_nursery() as nursery:
            for sock in squatters:
                nursery.start_soon(forge, sock)
            await cluster.start()
            leader = await cluster.wait_leader()
            follower = await cluster.follower()
            async with leader.client() as writer, follower.client() as reader:
                for i in range(10):
                    await writer.call("put", "/ri/f", str(i).encode())
                    kv = await reader.call("get", "/ri/f", True)
                    assert kv is not None and kv[1] == str(i).encode()
            points = (await follower.call("status"))["read_points"]
            assert requests >= 1
            assert points["udp"] == 0 and points["udp_timeouts"] >= 1, points
            assert points["tcp"] >= 10, points
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            for r in cluster.replicas:
                if r.proc is not None and r.proc.poll() is None:
                    await r.stop()
        for sock in squatters:
            sock.close()
