"""Tokens, node credentials and least privilege (issue 7).

Every credential except the admin token (``D/admin-token``) lives in the store, hashed:

    /edgeplane/tokens/<id>   JSON {"id", "kind", "role", "name", "node", "sha256", "created",
                                    "expires", "description"}

``kind`` is ``join`` (a join token: ``role`` ``node`` or ``master``; only accepted by the join
endpoints) or ``auth`` (a bearer credential for the API: ``role`` ``admin``, ``viewer`` or
``node``; a node's credential names its ``node``). A bearer credential is ``<id>.<secret>``;
only sha256(secret) is stored, so a copy of the store or a snapshot does not hand out tokens.

A join token, as printed by ``edgectl token create``, pins the cluster CA::

    K10<sha256 of the CA certificate (DER), hex>::<id>.<secret>

The joining side fetches the CA from ``GET /edgeplane/v1/cacerts`` (unauthenticated), checks
its hash against the token and only then sends ``<id>.<secret>`` over TLS verified by that CA.

Authorization: admins everything, viewers read-only, nodes as Kubernetes' Node authorizer and
NodeRestriction admission plugin allow (:func:`node_authorize`). The log endpoint of each agent
accepts only a per-node credential derived from the cluster secret (:func:`log_credential`):
the masters can compute it for any node, a node knows only its own, and it is neither the
node's API credential nor the admin token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import ssl
import time
from dataclasses import dataclass
from typing import Any

from . import errors

__all__ = [
    "JOIN_TOKEN_PREFIX",
    "TOKENS_PREFIX",
    "ClusterAuthenticator",
    "JoinError",
    "JoinToken",
    "TokenRecord",
    "ca_hash",
    "fetch_pinned_ca",
    "log_credential",
    "node_authorize",
    "parse_duration",
    "parse_join_token",
    "post_join",
]

# k3s's prefix for "a token that pins the CA": operators recognise the shape.
JOIN_TOKEN_PREFIX = "K10"
# Store keys of tokens (outside /registry/: they are not API objects and never listed as such).
TOKENS_PREFIX = "/edgeplane/tokens/"
# 16 random bytes = 128 bits for a token's secret (the minimum); the id is only a key.
_SECRET_BYTES = 16
_ID_BYTES = 4
_ROLES = {"join": ("node", "master"), "auth": ("admin", "viewer", "node")}
# Verified credentials remembered per master (ClusterAuthenticator): far more than the nodes
# and users of a cluster; a bound on what a flood of valid-looking tokens can make it keep.
_VERIFIED_MAX = 10_000
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")
_READ_VERBS = frozenset({"get", "list", "watch"})
# What a node may read (the agent's pod watch, Node/Lease reads, and the proxy's services).
_NODE_READABLE = frozenset({"pods", "nodes", "services", "endpoints", "endpointslices",
                            "namespaces", "configmaps", "leases"})
NODE_LEASE_NAMESPACE = "kube-node-lease"


def ca_hash(cert_pem: bytes | str) -> str:
    """sha256 (hex) of a PEM certificate's DER bytes (the first certificate of the text): what
    a join token pins. Raises ValueError if the text holds no PEM certificate."""
    # The standard library's PEM decoding, not cryptography's: cryptography costs an edge agent
    # ~8 MB of RSS for as long as it runs, and agents hash the CA only once, when they join.
    text = cert_pem.decode("ascii", "replace") if isinstance(cert_pem, bytes) else cert_pem
    start = text.find(ssl.PEM_HEADER)
    end = text.find(ssl.PEM_FOOTER, start)
    if start < 0 or end < 0:
        raise ValueError("not a PEM certificate")
    der = ssl.PEM_cert_to_DER_cert(text[start:end + len(ssl.PEM_FOOTER)])
    # A certificate is one DER SEQUENCE with a long-form length covering the rest exactly.
    if len(der) < 4 or der[0] != 0x30 or not 0x81 <= der[1] <= 0x84:
        raise ValueError("not a PEM certificate")
    size = int.from_bytes(der[2:2 + der[1] - 0x80], "big")
    if 2 + der[1] - 0x80 + size != len(der):
        raise ValueError("not a PEM certificate")
    return hashlib.sha256(der).hexdigest()


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def log_credential(cluster_secret: str, node_name: str) -> str:
    """The bearer credential node ``node_name``'s log endpoint accepts from the masters."""
    mac = hmac.new(cluster_secret.encode(), f"edgeplane-log-endpoint:{node_name}".encode(),
                   hashlib.sha256)
    return mac.hexdigest()


@dataclass(frozen=True)
class JoinToken:
    ca_hash: str
    token_id: str
    secret: str

    @property
    def bearer(self) -> str:
        return f"{self.token_id}.{self.secret}"


def parse_join_token(text: str) -> JoinToken:
    """``K10<hash>::<id>.<secret>`` -> JoinToken; ValueError with what is wrong."""
    text = text.strip()
    if not text.startswith(JOIN_TOKEN_PREFIX) or "::" not in text:
        raise ValueError(f"a join token looks like {JOIN_TOKEN_PREFIX}<CA hash>::<id>.<secret> "
                         "(from `edgectl token create`)")
    digest, _, cred = text[len(JOIN_TOKEN_PREFIX):].partition("::")
    token_id, dot, secret = cred.partition(".")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError("the join token's CA hash is not 64 hex digits")
    if not dot or not token_id or not secret:
        raise ValueError("the join token's credential part must be <id>.<secret>")
    return JoinToken(digest, token_id, secret)


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(s|m|h|d)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``24h``, ``7d``, ``1h30m`` -> seconds; ``0`` -> 0 (never expires)."""
    text = text.strip()
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION_RE.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {text!r}: use e.g. 30m, 24h, 7d or 0 (no expiry)")
    return total


@dataclass
class TokenRecord:
    id: str
    kind: str  # "join" | "auth"
    role: str
    sha256: str
    created: float
    expires: float | None = None
    name: str = ""  # a named token's user name, or the node a node credential belongs to
    description: str = ""

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()

    @classmethod
    def from_json(cls, value: bytes) -> TokenRecord | None:
        try:
            data = json.loads(value)
            return cls(id=str(data["id"]), kind=str(data["kind"]), role=str(data["role"]),
                       sha256=str(data["sha256"]), created=float(data["created"]),
                       expires=None if data.get("expires") is None else float(data["expires"]),
                       name=str(data.get("name") or ""),
                       description=str(data.get("description") or ""))
        except (ValueError, KeyError, TypeError):
            return None

    def expired(self, now: float | None = None) -> bool:
        return self.expires is not None and (now or time.time()) >= self.expires

    def public(self) -> dict[str, Any]:
        """What ``token list`` shows: never the secret nor its hash."""
        return {"id": self.id, "kind": self.kind, "role": self.role, "name": self.name,
                "description": self.description, "created": _rfc3339(self.created),
                "expires": _rfc3339(self.expires) if self.expires else None,
                "expired": self.expired()}


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _user_for(record: TokenRecord) -> Any:
    from .apiserver import User

    if record.role == "node":
        return User(f"system:node:{record.name}", ("system:nodes",), "node")
    group = "system:masters" if record.role == "admin" else "edgeplane:viewers"
    return User(record.name or f"token-{record.id}", (group,), record.role)


class ClusterAuthenticator:
    """Bearer tokens: the admin token (constant-time compare) or ``<id>.<secret>`` looked up
    in the store (a local read: a revoked or expired token is refused as soon as this replica
    applied the deletion)."""

    def __init__(self, store: Any, admin_token: str) -> None:
        self.store = store
        self._admin = admin_token.encode()
        self._admin_user: Any = None
        # Credentials verified before, by sha256 of the bearer: (their record's key and
        # mod_revision, the user, when they expire). A hit still reads the record's key locally
        # (a revoked or replaced record is not the same revision) and checks the expiry, but
        # skips decoding the record, hashing the secret and making the user (~8 of ~11 us of
        # every agent request).
        self._verified: dict[bytes, tuple[str, int, Any, float | None]] = {}

    def is_admin_token(self, token: str) -> bool:
        return hmac.compare_digest(self._admin, token.encode())

    async def lookup(self, token: str, kind: str) -> TokenRecord | None:
        found = await self._lookup(token, kind)
        return found[0] if found is not None else None

    async def _lookup(self, token: str, kind: str) -> tuple[TokenRecord, Any] | None:
        """(the record, its key-value) of a valid credential of ``kind``, or None."""
        token_id, dot, secret = token.partition(".")
        if not dot or not token_id or not secret or "/" in token_id or len(token_id) > 64:
            return None
        kv = await self.store.get(TOKENS_PREFIX + token_id, linearizable=False)
        if kv is None:
            # A token created a moment ago through another master may not have reached this
            # replica yet: ask the leader before refusing (misses only; hits stay local).
            from raftstore import StoreError

            try:
                kv = await self.store.get(TOKENS_PREFIX + token_id, linearizable=True)
            except StoreError:
                kv = None
        record = TokenRecord.from_json(kv.value) if kv is not None else None
        if record is None or record.kind != kind:
            return None
        if not hmac.compare_digest(record.sha256, _sha256(secret)) or record.expired():
            return None
        return record, kv

    async def authenticate(self, token: str) -> Any:
        if self.is_admin_token(token):
            if self._admin_user is None:
                from .apiserver import User

                self._admin_user = User("admin", ("system:masters",), "admin")
            return self._admin_user
        if self.store is None:
            return None
        digest = hashlib.sha256(token.encode()).digest()
        known = self._verified.get(digest)
        if known is not None:
            key, revision, user, expires = known
            kv = await self.store.get(key, linearizable=False)
            if kv is not None and kv.mod_revision == revision and (expires is None or time.time() < expires):
                return user
            del self._verified[digest]  # revoked, replaced or expired: decide afresh
        found = await self._lookup(token, "auth")
        if found is None:
            return None
        record, kv = found
        user = _user_for(record)
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.clear()
        self._verified[digest] = (kv.key, kv.mod_revision, user, record.expires)
        return user

    # ---------------------------------------------------------------- token management

    async def create(self, *, kind: str, role: str, ttl: float | None = None, name: str = "",
                     description: str = "") -> tuple[TokenRecord, str]:
        """A new token: (its record, ``<id>.<secret>``). The secret exists only in the answer."""
        if role not in _ROLES.get(kind, ()):
            raise errors.bad_request(f"role {role!r} is not one of {', '.join(_ROLES.get(kind, ()))}")
        if name and not _NAME_RE.match(name):
            raise errors.bad_request(f"name {name!r}: use lower-case letters, digits, '-' and '.'")
        if ttl is not None and ttl < 0:
            raise errors.bad_request("ttl must not be negative")
        from raftstore import Compare, Op

        now = time.time()
        for _ in range(5):
            token_id = secrets.token_hex(_ID_BYTES)
            secret = secrets.token_hex(_SECRET_BYTES)
            record = TokenRecord(id=token_id, kind=kind, role=role, sha256=_sha256(secret),
                                 created=now, expires=now + ttl if ttl else None, name=name,
                                 description=description)
            key = TOKENS_PREFIX + token_id
            result = await self.store.txn([Compare(key, "version", "==", 0)],
                                          [Op.put(key, record.to_json())], [])
            if result.succeeded:
                return record, f"{token_id}.{secret}"
        raise errors.internal_error()

    async def records(self) -> list[TokenRecord]:
        result = await self.store.range(TOKENS_PREFIX)
        records = [TokenRecord.from_json(kv.value) for kv in result.kvs]
        return sorted((r for r in records if r is not None), key=lambda r: r.created)

    async def delete(self, token_id: str) -> TokenRecord:
        if not token_id or "/" in token_id:
            raise errors.bad_request("a token id is required")
        _, prev = await self.store.delete(TOKENS_PREFIX + token_id)
        record = TokenRecord.from_json(prev.value) if prev is not None else None
        if record is None:
            raise errors.ApiError(404, "NotFound", f'token "{token_id}" not found')
        return record

    async def revoke_node(self, node: str) -> list[str]:
        """Delete every credential of node ``node``; the ids deleted."""
        gone = []
        for record in await self.records():
            if record.kind == "auth" and record.role == "node" and record.name == node:
                await self.store.delete(TOKENS_PREFIX + record.id)
                gone.append(record.id)
        return gone


def _forbidden(resource: str, name: str | None, message: str) -> errors.ApiError:
    target = f'{resource} "{name}"' if name else resource
    return errors.ApiError(403, "Forbidden", f"{target} is forbidden: {message}",
                           {"name": name or "", "kind": resource})


def make_authorizer(registry: Any) -> Any:
    """``authorize(user, verb, resource, namespace, name, subresource, obj)`` for the API app:
    admins everything, viewers reads, nodes :func:`node_authorize`. A node's write of a pod's
    status (or of its annotations) is answered with an admission check instead
    (:class:`PodBoundToNode`): the write runs it on the stored pod it starts from, so the pod is
    not read once more for the check (a linearizable read per status write of every agent:
    ~40 % of a follower's CPU per status PATCH, measured with bench.reqcost --node-tokens), and
    the check sees exactly the version written."""

    async def authorize(user: Any, verb: str, resource: str, namespace: str | None,
                        name: str | None, subresource: str | None, obj: Any) -> Any:
        if user.role == "admin":
            return True
        if user.role == "viewer":
            return verb in _READ_VERBS and subresource != "log"
        if user.role == "node":
            if resource == "pods" and name is not None and _pod_status_write(verb, subresource, obj):
                return PodBoundToNode(user, name)
            await node_authorize(registry, user, verb, resource, namespace, name, subresource, obj)
            return True
        return False

    return authorize


def _pod_status_write(verb: str, subresource: str | None, obj: Any) -> bool:
    """A write a node may make to a pod bound to it, other than a delete: its status, or
    (merge patch) its annotations."""
    return ((verb in ("update", "patch") and subresource == "status")
            or (verb == "patch" and subresource is None and _annotations_only(obj)))


class PodBoundToNode:
    """Admission of a node's write to a pod (NodeRestriction): called by the registry with the
    stored pod the write starts from (None if there is none); 403 unless it is bound to the
    node. The registry calls it again on every retry, with the version that retry writes."""

    __slots__ = ("user", "name")

    def __init__(self, user: Any, name: str) -> None:
        self.user = user
        self.name = name

    def __call__(self, pod: dict[str, Any] | None) -> None:
        _check_pod_bound(self.user, self.name, pod)


def _check_pod_bound(user: Any, name: str, pod: dict[str, Any] | None) -> None:
    node = user.name.removeprefix("system:node:")
    who = f'node "{node}"'
    if pod is None:
        raise _forbidden("pods", name, f"{who} can only modify pods bound to it")
    bound = (pod.get("spec") or {}).get("nodeName")
    if bound != node:
        raise _forbidden("pods", name,
                         f"{who} can only update pod status for pods with spec.nodeName "
                         f"set to itself (this pod is bound to {bound or 'no node'})")


async def node_authorize(registry: Any, user: Any, verb: str, resource: str,
                         namespace: str | None, name: str | None, subresource: str | None,
                         obj: Any) -> None:
    """Raise a 403 ApiError unless node ``user`` may do this (NodeRestriction's rules):
    read pods, nodes, services, endpoints, namespaces, configmaps and leases; create/update its
    own Node (and nodes/status) and its own Lease in kube-node-lease; update the status of pods
    bound to it and delete them; nothing else."""
    node = user.name.removeprefix("system:node:")
    who = f'node "{node}"'
    if verb in _READ_VERBS:
        if resource in _NODE_READABLE and subresource in (None, "status"):
            return
        raise _forbidden(resource, name, f'User "{user.name}" cannot {verb} resource '
                                         f'"{resource}": {who} may not read {resource}')
    if resource == "nodes" and verb in ("create", "update", "patch"):
        target = name if name is not None else _meta_name(obj)
        if target != node:
            raise _forbidden(resource, target, f"{who} can only update its own Node")
        return
    if resource == "leases" and verb in ("create", "update", "patch"):
        target = name if name is not None else _meta_name(obj)
        if namespace != NODE_LEASE_NAMESPACE or target != node:
            raise _forbidden(resource, target,
                             f"{who} can only update its own Lease in {NODE_LEASE_NAMESPACE}")
        return
    if resource == "pods" and name is not None and (
            (verb == "delete" and subresource is None) or _pod_status_write(verb, subresource, obj)):
        try:
            pod = await registry.get("pods", namespace, name)
        except errors.ApiError as exc:
            if exc.code != 404:
                raise
            pod = None
        _check_pod_bound(user, name, pod)
        return
    if resource == "pods" and verb == "create" and subresource is None:
        raise _forbidden(resource, name, f"{who} may not create pods")
    raise _forbidden(resource, name, f'User "{user.name}" cannot {verb} resource "{resource}"'
                                     f'{"/" + subresource if subresource else ""}: '
                                     f"{who} may only update its own Node, Lease and pod status")


def _annotations_only(patch: Any) -> bool:
    """A merge patch touching only metadata.annotations (with a uid precondition): the agent
    publishes a pod's host ports this way, before its status (edge_agent._api)."""
    return (isinstance(patch, dict) and set(patch) == {"metadata"}
            and isinstance(patch["metadata"], dict)
            and set(patch["metadata"]) <= {"uid", "annotations"})


def _meta_name(obj: Any) -> str | None:
    if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict):
        value = obj["metadata"].get("name")
        return str(value) if value is not None else None
    return None


class JoinError(Exception):
    """Joining failed; the message says why (never containing the token's secret)."""


# Fetching the CA or the join answer is one small request; a master answers at once or not at all.
_JOIN_HTTP_TIMEOUT_S = 10.0


def fetch_pinned_ca(server: str, token: JoinToken) -> bytes:
    """The cluster CA from ``server`` (``GET /edgeplane/v1/cacerts``), checked against the
    token's hash. Nothing secret is sent: the request carries no credential, and the caller
    sends the token's secret only over TLS verified by the CA returned here."""
    import httpx

    if not server.startswith("https://"):
        raise JoinError(f"{server}: a join token is only sent over HTTPS (got a non-https URL)")
    url = server.rstrip("/") + "/edgeplane/v1/cacerts"
    try:
        # Unverified on purpose: the hash in the token, not a trust store, decides.
        response = httpx.get(url, verify=False, timeout=_JOIN_HTTP_TIMEOUT_S, trust_env=False)
    except httpx.HTTPError as exc:
        raise JoinError(f"cannot fetch the cluster CA from {server}: {exc}") from None
    if response.status_code != 200:
        raise JoinError(f"{server} did not serve a cluster CA (HTTP {response.status_code})")
    try:
        got = ca_hash(response.content)
    except ValueError:
        raise JoinError(f"{server} served something that is not a PEM certificate as its CA") from None
    if not hmac.compare_digest(got, token.ca_hash):
        raise JoinError(
            f"refusing to join: the CA served by {server} has sha256 {got}, but the join token "
            f"pins {token.ca_hash}; the server is not the cluster the token belongs to (or "
            "someone is in between). The token's secret was not sent.")
    return response.content


def post_join(server: str, path: str, token: JoinToken, ca_pem: bytes,
              body: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST ``body`` to ``server`` + ``path`` with the join token, verifying the server
    against ``ca_pem`` (from :func:`fetch_pinned_ca`)."""
    import ssl

    import httpx

    context = ssl.create_default_context(cadata=ca_pem.decode())
    try:
        response = httpx.post(server.rstrip("/") + path, json=body or {},
                              headers={"Authorization": f"Bearer {token.bearer}"},
                              verify=context, timeout=_JOIN_HTTP_TIMEOUT_S, trust_env=False)
    except httpx.HTTPError as exc:
        raise JoinError(f"cannot reach {server}: {exc}") from None
    if response.status_code != 200:
        try:
            message = response.json().get("message") or response.text
        except ValueError:
            message = response.text
        raise JoinError(f"{server} refused the join token ({response.status_code}): "
                        f"{str(message)[:300]}")
    try:
        answer = response.json()
    except ValueError:
        raise JoinError(f"{server} did not answer with JSON; is it an edgeplane master?") from None
    if not isinstance(answer, dict):
        raise JoinError(f"{server} sent an unexpected join answer")
    return answer
