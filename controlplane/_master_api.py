"""The master's own endpoints under ``/edgeplane/v1``, in front of the Kubernetes API app.

    GET    /edgeplane/v1/cluster/status   members, leader, term, indexes, lag, duties, nodes
    GET    /edgeplane/v1/members          every master (name, raft address, api address)
    POST   /edgeplane/v1/join             (admin) what a joining master needs: the cluster
                                          secret and the members; changes nothing
    POST   /edgeplane/v1/members          (admin, leader) add a master: Raft membership change
    DELETE /edgeplane/v1/members/NAME     (admin, leader) remove a master; the leader itself
                                          hands its leadership over first
    GET    /edgeplane/v1/cacerts          (no credential) the cluster CA certificate (PEM): a
                                          joining side checks its hash against its join token
    POST   /edgeplane/v1/nodes/join       (node join token) a node's own API credential and
                                          log-endpoint credential
    POST   /edgeplane/v1/nodes/NAME/revoke (admin) delete every credential of node NAME
    GET    /edgeplane/v1/tokens           (admin) tokens, without secrets
    POST   /edgeplane/v1/tokens           (admin) create a join or named token
    DELETE /edgeplane/v1/tokens/ID        (admin) revoke a token

``POST /edgeplane/v1/join`` also accepts a master join token (``edgectl token create --role
master``); a node join token is refused there with 403.

Membership changes must be proposed by the Raft leader; any other master answers 503, which
the edgeplane client treats as "try the next master", so callers need not know the leader.

Every master records itself under ``/edgeplane/members/<name>`` in the store, so every replica
can name every member and tell clients every API address.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from . import errors
from ._security import JOIN_TOKEN_PREFIX, ca_hash
from .errors import ApiError

__all__ = ["AGENT_USER_AGENT_PREFIX", "MEMBERS_PREFIX", "PREFER_OTHER_MASTER_HEADER", "MasterEndpoints",
           "MemberRecord", "decode_member", "encode_member"]

log = logging.getLogger("controlplane.master")

# Store keys of the member records (outside /registry/: they are not API objects).
MEMBERS_PREFIX = "/edgeplane/members/"
# Join and member requests are tiny; anything bigger is not ours.
_MAX_BODY = 64 * 1024

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class MemberRecord:
    name: str
    raft_address: str
    api_address: str  # a URL, e.g. http://127.0.0.1:25001

    def as_api(self) -> dict[str, str]:
        return {"name": self.name, "raftAddress": self.raft_address, "apiAddress": self.api_address}


def encode_member(record: MemberRecord) -> bytes:
    return json.dumps(record.as_api(), sort_keys=True).encode()


def decode_member(value: bytes) -> MemberRecord | None:
    try:
        data = json.loads(value)
        return MemberRecord(str(data["name"]), str(data["raftAddress"]), str(data["apiAddress"]))
    except (ValueError, KeyError, TypeError):
        return None


# Node agents announce themselves with a User-Agent that starts with this (edge_agent's API
# session sends it, followed by its version): their watches are counted and they may be hinted
# away from the leader. Defined here, by the side that acts on it; edge_agent imports it.
AGENT_USER_AGENT_PREFIX = "edgeplane-agent/"
# Added (value "true") to the answers the leader gives node agents while it serves more than its
# share: the request is served, and the agent sends its next ones (and its watch) to another
# master. edge_agent's API session reads it under this name.
PREFER_OTHER_MASTER_HEADER = "x-edgeplane-prefer-other-master"
_AGENT_USER_AGENT = AGENT_USER_AGENT_PREFIX.encode()  # ASGI headers are bytes
_PREFER_OTHER = (PREFER_OTHER_MASTER_HEADER.encode(), b"true")
# Values of the ``watch`` query parameter that make a list a watch (the API app's flag values).
_WATCH_TRUE = frozenset({"true", "1"})


def _from_agent(scope: dict[str, Any]) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"user-agent":
            return value.startswith(_AGENT_USER_AGENT)
    return False


def _is_watch(scope: dict[str, Any]) -> bool:
    """Whether the API app will serve this request as a watch: the first ``watch`` query
    parameter is ``true`` or ``1`` in any case, as the app's ``Request.flag`` reads Kubernetes'
    ``ListOptions.watch``. Read from the parsed query, so ``labelSelector=watch%3Dtrue`` or
    ``nowatch=1`` is not one, and ``watch=false`` is not one."""
    query = scope.get("query_string", b"")
    if not query:  # most agent requests (lease renewals, status writes) have none
        return False
    values = parse_qs(query.decode("latin-1"), keep_blank_values=True).get("watch")
    return values is not None and values[0].lower() in _WATCH_TRUE


def _with_prefer_other(send: Send) -> Send:
    async def sender(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), _PREFER_OTHER]}
        await send(message)
    return sender


def _json(status: int, body: Any) -> tuple[int, bytes]:
    return status, json.dumps(body).encode()


class MasterEndpoints:
    """ASGI app: ``/edgeplane/...`` here, everything else to ``inner`` (the Kubernetes API)."""

    def __init__(self, inner: Any, master: Any) -> None:
        self.inner = inner
        self.master = master  # controlplane.master.Master (status, membership, secrets)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith("/edgeplane/"):
            master = self.master
            if _from_agent(scope):
                if _is_watch(scope):
                    master.agent_watches += 1  # (counted on every master: one may lead later)
                    try:
                        await self.inner(scope, receive, send)
                    finally:
                        master.agent_watches -= 1
                    return
                if master.sheds_agents and master.agent_watches > master.agent_budget:
                    await self.inner(scope, receive, _with_prefer_other(send))
                    return
            await self.inner(scope, receive, send)
            return
        if scope["path"].rstrip("/") == "/edgeplane/v1/cacerts" and scope.get("method") == "GET":
            # Public on purpose: a joiner must see the CA before it trusts (or sends) anything.
            pem = self.master.ca_pem()
            await send({"type": "http.response.start", "status": 200 if pem else 404,
                        "headers": [(b"content-type", b"application/x-pem-file")]})
            await send({"type": "http.response.body", "body": pem or b"this master serves no CA\n"})
            return
        try:
            status, body = await self._handle(scope, receive)
        except ApiError as exc:
            status, body = _json(exc.code, exc.status())
        except Exception:
            log.exception("internal error serving %s %s", scope.get("method"), scope.get("path"))
            failure = errors.internal_error()
            status, body = _json(failure.code, failure.status())
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"cache-control", b"no-cache, private")]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _bearer(scope: dict[str, Any]) -> str:
        header = b""
        for key, value in scope.get("headers", []):
            if key.lower() == b"authorization":
                header = value
        scheme, _, token = header.decode("latin-1").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""

    async def _maybe_user(self, scope: dict[str, Any]) -> Any:
        token = self._bearer(scope)
        user = None
        if token:
            user = self.master.authenticator.authenticate(token)
            if inspect.isawaitable(user):
                user = await user
        return user

    async def _user(self, scope: dict[str, Any]) -> Any:
        user = await self._maybe_user(scope)
        if user is None:
            raise errors.unauthorized()
        return user

    async def _join_token(self, scope: dict[str, Any], role: str, what: str) -> Any:
        """The join token record of this request's bearer credential (401 if none, 403 if it
        is a join token of another role)."""
        token = self._bearer(scope)
        lookup = getattr(self.master.authenticator, "lookup", None)
        record = await lookup(token, "join") if token and lookup is not None else None
        if record is None:
            raise errors.ApiError(401, "Unauthorized",
                                  "the join token is unknown, expired or revoked")
        if record.role != role:
            raise errors.forbidden("tokens", record.id,
                                   f"a {record.role} join token cannot {what}; create one with "
                                   f"`edgectl token create --role {role}`")
        return record

    @staticmethod
    def _require_admin(user: Any, what: str) -> None:
        if getattr(user, "role", "") != "admin":
            raise errors.forbidden("members", "", f"only an admin may {what}")

    @staticmethod
    def _require_reader(user: Any) -> None:
        if getattr(user, "role", "") not in ("admin", "viewer"):
            raise errors.forbidden("cluster", "", f'User "{user.name}" may not read the cluster '
                                   "status or members")

    async def _body(self, receive: Receive) -> dict[str, Any]:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise errors.bad_request("the client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > _MAX_BODY:
                raise errors.too_large(_MAX_BODY)
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        try:
            data = json.loads(b"".join(chunks) or b"{}")
        except ValueError:
            raise errors.bad_request("the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise errors.bad_request("the body must be a JSON object")
        return data

    async def _handle(self, scope: dict[str, Any], receive: Receive) -> tuple[int, bytes]:
        method = scope.get("method", "GET")
        parts = [p for p in scope["path"].split("/") if p]
        if parts[:2] != ["edgeplane", "v1"]:
            raise errors.not_found("edgeplane", scope["path"])
        rest = parts[2:]
        master = self.master
        if rest == ["nodes", "join"] and method == "POST":
            record = await self._join_token(scope, "node", "join a node")
            body = await self._body(receive)
            node = body.get("nodeName")
            if not isinstance(node, str) or not node:
                raise errors.bad_request("nodeName is required")
            answer = await master.node_join(node, record)
            log.info("node %s joined with join token %s", node, record.id)
            return _json(200, answer)
        user = await self._maybe_user(scope)
        if rest == ["join"] and method == "POST" and user is None:
            record = await self._join_token(scope, "master", "join a master")
            log.info("a master joins with join token %s", record.id)
            return _json(200, await master.join_info(with_admin_token=True))
        if user is None:
            raise errors.unauthorized()
        if rest == ["cluster", "status"] and method == "GET":
            self._require_reader(user)
            return _json(200, await master.cluster_status())
        if rest == ["members"] and method == "GET":
            self._require_reader(user)
            return _json(200, {"members": [m.as_api() for m in await master.members()]})
        if rest == ["join"] and method == "POST":
            self._require_admin(user, "join a master")
            return _json(200, await master.join_info())
        if rest and rest[0] == "tokens":
            return await self._tokens(user, method, rest[1:], receive)
        if len(rest) == 3 and rest[0] == "nodes" and rest[2] == "revoke" and method == "POST":
            self._require_admin(user, "revoke a node's credentials")
            revoked = await master.authenticator.revoke_node(rest[1])
            log.info("revoked %d credential(s) of node %s", len(revoked), rest[1])
            return _json(200, {"node": rest[1], "revoked": revoked})
        if rest == ["members"] and method == "POST":
            self._require_admin(user, "add a master")
            body = await self._body(receive)
            try:
                record = MemberRecord(str(body["name"]), str(body["raftAddress"]),
                                      str(body["apiAddress"]))
            except KeyError as exc:
                raise errors.bad_request(f"missing field {exc.args[0]!r}") from None
            started = time.monotonic()
            members = await master.add_member(record)
            log.info("added master %s (raft %s, api %s) in %.2fs", record.name,
                     record.raft_address, record.api_address, time.monotonic() - started)
            return _json(201, {"members": [m.as_api() for m in members]})
        if len(rest) == 2 and rest[0] == "members" and method == "DELETE":
            self._require_admin(user, "remove a master")
            members = await master.remove_member(rest[1])
            log.info("removed master %s", rest[1])
            return _json(200, {"members": [m.as_api() for m in members]})
        if rest and rest[0] in ("cluster", "members", "join", "nodes"):
            raise errors.method_not_allowed()
        raise errors.ApiError(404, "NotFound", f"the server could not find {scope['path']}")

    async def _tokens(self, user: Any, method: str, rest: list[str],
                      receive: Receive) -> tuple[int, bytes]:
        self._require_admin(user, "manage tokens")
        auth = self.master.authenticator
        if not rest and method == "GET":
            return _json(200, {"items": [r.public() for r in await auth.records()]})
        if not rest and method == "POST":
            body = await self._body(receive)
            kind = str(body.get("kind") or "join")
            ttl = body.get("ttlSeconds")
            if ttl is not None and not isinstance(ttl, (int, float)):
                raise errors.bad_request("ttlSeconds must be a number")
            record, bearer = await auth.create(
                kind=kind, role=str(body.get("role") or "node"), ttl=ttl or None,
                name=str(body.get("name") or ""), description=str(body.get("description") or ""))
            if kind == "join":
                pem = self.master.ca_pem()
                if not pem:
                    raise errors.bad_request("this cluster serves no CA (plain HTTP): join tokens "
                                             "need one to pin")
                token = f"{JOIN_TOKEN_PREFIX}{ca_hash(pem)}::{bearer}"
            else:
                token = bearer
            log.info("created %s token %s (role %s%s)", kind, record.id, record.role,
                     f", name {record.name}" if record.name else "")
            return _json(201, {"token": token, "record": record.public()})
        if len(rest) == 1 and method == "DELETE":
            record = await auth.delete(rest[0])
            log.info("deleted token %s", record.id)
            return _json(200, {"deleted": record.public()})
        raise errors.method_not_allowed()
