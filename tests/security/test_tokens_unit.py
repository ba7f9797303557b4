"""Pure logic of tokens: the join token format, durations, hashing, and the token store on an
in-process MemoryStore (no processes)."""

from __future__ import annotations

import hashlib
import json

import pytest
import trio
from cryptography.hazmat.primitives.serialization import Encoding

from controlplane._master_tls import new_ca
from controlplane._security import (
    TOKENS_PREFIX,
    ClusterAuthenticator,
    ca_hash,
    log_credential,
    parse_duration,
    parse_join_token,
)
from raftstore import MemoryStore


def test_join_token_round_trip_and_errors() -> None:
    digest = "ab" * 32
    token = parse_join_token(f"K10{digest}::0a1b2c3d.{'f' * 32}\n")
    assert (token.ca_hash, token.token_id, token.secret) == (digest, "0a1b2c3d", "f" * 32)
    assert token.bearer == f"0a1b2c3d.{'f' * 32}"
    for bad, why in [("0a1b.c3", "looks like K10"), (f"K10{digest}0a1b.c3", "looks like K10"),
                     ("K10abc::0a1b.c3", "64 hex digits"), (f"K10{digest}::0a1b", "<id>.<secret>"),
                     (f"K10{digest}::.secret", "<id>.<secret>")]:
        with pytest.raises(ValueError, match=why):
            parse_join_token(bad)


def test_durations() -> None:
    assert parse_duration("24h") == 86400
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90s") == 90
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("0") == 0
    for bad in ("", "soon", "10", "5x", "h", "1h 2m"):
        with pytest.raises(ValueError, match="invalid duration"):
            parse_duration(bad)


def test_ca_hash_is_sha256_of_the_der_certificate() -> None:
    ca = new_ca()
    assert ca_hash(ca.cert_pem) == hashlib.sha256(ca.cert.public_bytes(Encoding.DER)).hexdigest()
    assert ca_hash(ca.cert_pem) != ca_hash(new_ca().cert_pem)


def test_log_credentials_differ_per_node_and_secret() -> None:
    assert log_credential("s", "n1") != log_credential("s", "n2")
    assert log_credential("s", "n1") != log_credential("t", "n1")
    assert log_credential("s", "n1") == log_credential("s", "n1")


async def test_tokens_are_stored_hashed_and_checked() -> None:
    store = MemoryStore(name="t")
    auth = ClusterAuthenticator(store, "admin-secret")
    record, bearer = await auth.create(kind="auth", role="viewer", name="alice")
    token_id, secret = bearer.split(".")
    assert record.id == token_id and len(secret) == 32  # 128 bits, hex
    stored = (await store.get(TOKENS_PREFIX + token_id)).value
    assert secret.encode() not in stored and hashlib.sha256(secret.encode()).hexdigest().encode() in stored
    user = await auth.authenticate(bearer)
    assert (user.name, user.role) == ("alice", "viewer")
    assert await auth.authenticate(f"{token_id}.{'0' * 32}") is None
    assert await auth.authenticate("admin-secret") is not None
    # A join token is not an API credential, and an API token does not join.
    _, join = await auth.create(kind="join", role="node")
    assert await auth.authenticate(join) is None
    assert await auth.lookup(bearer, "join") is None
    # Node credentials: revoked per node.
    _, node = await auth.create(kind="auth", role="node", name="n1")
    assert (await auth.authenticate(node)).name == "system:node:n1"
    assert await auth.revoke_node("n1") == [node.split(".")[0]]
    assert await auth.authenticate(node) is None
    # Expired tokens are refused.
    _, short = await auth.create(kind="auth", role="viewer", name="bob", ttl=1e-6)
    assert await auth.authenticate(short) is None
    await store.aclose()


async def test_a_credential_verified_before_is_checked_against_its_record_each_time() -> None:
    """authenticate remembers verified credentials (no decode and hash per request) but still
    sees a revocation, a replaced record and the expiry at once."""
    store = MemoryStore(name="t")
    auth = ClusterAuthenticator(store, "admin-secret")
    _, bearer = await auth.create(kind="auth", role="node", name="n1")
    assert (await auth.authenticate(bearer)).name == "system:node:n1"
    assert (await auth.authenticate(bearer)).name == "system:node:n1"  # remembered
    # The record replaced under the same id (another secret): the old bearer is refused.
    token_id = bearer.split(".")[0]
    kv = await store.get(TOKENS_PREFIX + token_id)
    replaced = json.loads(kv.value)
    replaced["sha256"] = hashlib.sha256(b"another secret").hexdigest()
    await store.put(TOKENS_PREFIX + token_id, json.dumps(replaced).encode())
    assert await auth.authenticate(bearer) is None
    # Expiry of a remembered credential.
    _, short = await auth.create(kind="auth", role="viewer", name="bob", ttl=0.2)
    assert (await auth.authenticate(short)).name == "bob"
    await trio.sleep(0.25)  # past its expiry
    assert await auth.authenticate(short) is None
    # Deleted: refused at once.
    _, gone = await auth.create(kind="auth", role="viewer", name="carol")
    assert await auth.authenticate(gone) is not None
    await auth.delete(gone.split(".")[0])
    assert await auth.authenticate(gone) is None
    await store.aclose()
