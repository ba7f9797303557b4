"""The master's own endpoints under ``/edgeplane/v1``, in front of the Kubernetes API app.

    GET    /edgeplane/v1/cluster/status   members, leader, term, indexes, lag, duties, nodes
    GET    /edgeplane/v1/members          every master (name, raft address, api address)
    POST   /edgeplane/v1/join             (admin) what a joining master needs: the cluster
                                          secret and the members; changes nothing
    POST   /edgeplane/v1/members          (admin, leader) add a master: Raft membership change
    DELETE /edgeplane/v1/members/NAME     (admin, leader) remove a master

Membership changes must be proposed by the Raft leader; any other master answers 503, which
the edgeplane client treats as "try the next master", so callers need not know the leader.

Every master records itself under ``/edgeplane/members/<name>`` in the store, so every replica
can name every member and tell clients every API address.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from . import errors
from .errors import ApiError

__all__ = ["MEMBERS_PREFIX", "MasterEndpoints", "MemberRecord", "decode_member", "encode_member"]

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


def _json(status: int, body: Any) -> tuple[int, bytes]:
    return status, json.dumps(body).encode()


class MasterEndpoints:
    """ASGI app: ``/edgeplane/...`` here, everything else to ``inner`` (the Kubernetes API)."""

    def __init__(self, inner: Any, master: Any) -> None:
        self.inner = inner
        self.master = master  # controlplane.master.Master (status, membership, secrets)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith("/edgeplane/"):
            await self.inner(scope, receive, send)
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

    def _user(self, scope: dict[str, Any]) -> Any:
        header = b""
        for key, value in scope.get("headers", []):
            if key.lower() == b"authorization":
                header = value
        scheme, _, token = header.decode("latin-1").partition(" ")
        user = None
        if scheme.lower() == "bearer" and token.strip():
            user = self.master.authenticator.authenticate(token.strip())
        if user is None:
            raise errors.unauthorized()
        return user

    @staticmethod
    def _require_admin(user: Any, what: str) -> None:
        if getattr(user, "role", "") != "admin":
            raise errors.forbidden("members", "", f"only an admin may {what}")

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
        user = self._user(scope)
        if parts[:2] != ["edgeplane", "v1"]:
            raise errors.not_found("edgeplane", scope["path"])
        rest = parts[2:]
        master = self.master
        if rest == ["cluster", "status"] and method == "GET":
            return _json(200, await master.cluster_status())
        if rest == ["members"] and method == "GET":
            return _json(200, {"members": [m.as_api() for m in await master.members()]})
        if rest == ["join"] and method == "POST":
            self._require_admin(user, "join a master")
            return _json(200, await master.join_info())
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
        if rest and rest[0] in ("cluster", "members", "join"):
            raise errors.method_not_allowed()
        raise errors.ApiError(404, "NotFound", f"the server could not find {scope['path']}")
