"""Decoding of Kubernetes protobuf request bodies (``application/vnd.kubernetes.protobuf``).

kubectl's typed clients (``kubectl create namespace|configmap|deployment``, ``kubectl expose``)
send built-in kinds as protobuf and accept JSON back. A body is the magic ``k8s\\0`` then a
``runtime.Unknown`` envelope (typeMeta, raw, contentEncoding, contentType) whose ``raw`` is the
object's message. We decode it into the same JSON-shaped dict a JSON client would send, guided
by the wire schema in ``_protobuf_schema``; responses stay JSON (clients list it as acceptable).

Go's JSON omits the zero values (empty strings, 0, false, zero times) that protobuf always
carries, so those are dropped — except for fields that are pointers in Go, where an explicit 0
(``replicas: 0``) is the user's choice and survives.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from .. import errors
from ._protobuf_schema import SCHEMA

__all__ = ["MEDIA_TYPE", "decode_protobuf"]

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
_MAGIC = b"k8s\x00"
# Message nesting deeper than this is refused (the served kinds nest ~15 levels at most).
_MAX_DEPTH = 64

_ROOTS = {
    ("v1", "Pod"): "v1.Pod", ("v1", "Node"): "v1.Node", ("v1", "Service"): "v1.Service",
    ("v1", "Endpoints"): "v1.Endpoints", ("v1", "ConfigMap"): "v1.ConfigMap",
    ("v1", "Namespace"): "v1.Namespace", ("v1", "Event"): "v1.Event", ("v1", "Binding"): "v1.Binding",
    ("apps/v1", "Deployment"): "v1.Deployment", ("apps/v1", "ReplicaSet"): "v1.ReplicaSet",
    ("v1", "DeleteOptions"): "DeleteOptions", ("meta.k8s.io/v1", "DeleteOptions"): "DeleteOptions",
}


class _Malformed(Exception):
    pass


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) triples; value is int for varint/fixed, bytes for length-delimited."""
    out = []
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if number == 0:
            raise _Malformed("field number 0")
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > end:
                raise _Malformed("truncated length-delimited field")
            value, pos = data[pos:pos + size], pos + size
        elif wire == 1:
            if pos + 8 > end:
                raise _Malformed("truncated fixed64")
            value, pos = int.from_bytes(data[pos:pos + 8], "little"), pos + 8
        elif wire == 5:
            if pos + 4 > end:
                raise _Malformed("truncated fixed32")
            value, pos = int.from_bytes(data[pos:pos + 4], "little"), pos + 4
        else:
            raise _Malformed(f"unsupported wire type {wire}")
        out.append((number, wire, value))
    return out


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Malformed("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _signed(value: int) -> int:
    # int32/int64 are two's complement in a 64-bit varint
    return value - (1 << 64) if value >= 1 << 63 else value


def _rfc3339(seconds: int, nanos: int, micro: bool) -> str | None:
    if seconds == 0 and nanos == 0:
        return None  # Go's zero time: JSON null
    try:
        base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    except (OverflowError, OSError, ValueError):
        raise _Malformed(f"time {seconds}s is out of range") from None
    return f"{base}.{nanos // 1000:06d}Z" if micro else base + "Z"


def _scalar(typ: str, wire: int, value: Any, where: str) -> Any:
    if typ == "string":
        if wire != 2:
            raise _Malformed(f"{where}: expected a string")
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise _Malformed(f"{where}: string is not UTF-8") from None
    if typ == "bytes":
        if wire != 2:
            raise _Malformed(f"{where}: expected bytes")
        return base64.b64encode(value).decode()
    if wire != 0:
        raise _Malformed(f"{where}: expected a varint")
    if typ == "bool":
        return bool(value)
    if typ in ("int32", "int64"):
        return _signed(value)
    raise _Malformed(f"{where}: unsupported type {typ}")


def _special(typ: str, data: bytes, where: str) -> Any:
    values: dict[int, Any] = {n: v for n, _w, v in _fields(data)}
    wants_bytes = {"@quantity": (1,), "@intorstring": (3,), "@raw": (1,)}.get(typ, ())
    if any(not isinstance(values.get(n, b""), bytes) for n in wants_bytes) or any(
        isinstance(values.get(n, 0), bytes) for n in ((1, 2) if typ in ("@time", "@microtime") else (1, 2) if typ == "@intorstring" else ())
    ):
        raise _Malformed(f"{where}: malformed {typ[1:]}")
    if typ in ("@time", "@microtime"):
        return _rfc3339(_signed(values.get(1, 0)), _signed(values.get(2, 0)), typ == "@microtime")
    if typ == "@quantity":
        return values.get(1, b"").decode("utf-8", "replace")
    if typ == "@intorstring":
        if values.get(1, 0) == 1:
            return values.get(3, b"").decode("utf-8", "replace")
        return _signed(values.get(2, 0))
    if typ == "@raw":
        raw = values.get(1, b"")
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise _Malformed(f"{where}: embedded raw value is not JSON") from None
    raise _Malformed(f"{where}: unsupported type {typ}")


def _value(typ: str, wire: int, value: Any, where: str, depth: int) -> Any:
    if typ.startswith("@"):
        if wire != 2:
            raise _Malformed(f"{where}: expected a message")
        return _special(typ, value, where)
    if typ in SCHEMA:
        if wire != 2:
            raise _Malformed(f"{where}: expected a message")
        return _message(typ, value, where, depth + 1)
    return _scalar(typ, wire, value, where)


# Fields that are pointers in Go (``*int32``, ``*bool``): an explicit 0/false on the wire means
# something there. Every other 0/false is a Go zero value that JSON would have omitted.
_POINTER_FIELDS = frozenset({
    "replicas", "revisionHistoryLimit", "progressDeadlineSeconds", "terminationGracePeriodSeconds",
    "activeDeadlineSeconds", "automountServiceAccountToken", "shareProcessNamespace", "priority",
    "enableServiceLinks", "setHostnameAsFQDN", "hostUsers", "runAsUser", "runAsGroup", "runAsNonRoot",
    "fsGroup", "privileged", "readOnlyRootFilesystem", "allowPrivilegeEscalation", "procMount",
    "deletionGracePeriodSeconds", "controller", "blockOwnerDeletion", "gracePeriodSeconds",
    "orphanDependents", "immutable", "allocateLoadBalancerNodePorts", "defaultMode", "optional", "mode",
    "expirationSeconds", "tolerationSeconds",
})


def _keep(field: str, value: Any) -> bool:
    if value is None or value == "":
        return False
    if value is False or (type(value) is int and value == 0):
        return field in _POINTER_FIELDS
    return True


def _message(name: str, data: bytes, where: str, depth: int) -> dict[str, Any]:
    if depth > _MAX_DEPTH:
        raise _Malformed("nested too deeply")
    schema = SCHEMA[name]
    out: dict[str, Any] = {}
    for number, wire, raw in _fields(data):
        spec = schema.get(number)
        if spec is None:
            raise _Malformed(f"{where or name}: field number {number} of {name} is not known to this server")
        field, typ, repeated, map_key = spec
        path = f"{where}.{field}" if where else field
        if map_key is not None:
            if wire != 2:
                raise _Malformed(f"{path}: expected a map entry")
            entry = {n: (w, v) for n, w, v in _fields(raw)}
            key = _scalar(map_key, *entry.get(1, (2, b"")), path)
            value = _value(typ, *entry[2], f"{path}[{key}]", depth) if 2 in entry else ("" if typ == "string" else None)
            out.setdefault(field, {})[key] = value
        elif repeated:
            items = out.setdefault(field, [])
            if wire == 2 and typ in ("int32", "int64", "bool"):  # packed
                pos = 0
                while pos < len(raw):
                    item, pos = _varint(raw, pos)
                    items.append(_scalar(typ, 0, item, path))
            else:
                items.append(_value(typ, wire, raw, f"{path}[{len(items)}]", depth))
        else:
            value = _value(typ, wire, raw, path, depth)
            if _keep(field, value):
                out[field] = value
            else:
                out.pop(field, None)
    return out


def decode_protobuf(body: bytes) -> dict[str, Any]:
    """The JSON-shaped object of a protobuf request body; 400/415 with the reason otherwise."""
    if not body.startswith(_MAGIC):
        raise errors.bad_request("the protobuf body does not start with the Kubernetes magic prefix k8s\\x00")
    try:
        envelope = {n: v for n, w, v in _fields(body[len(_MAGIC):]) if w == 2}
        type_meta = {n: v for n, w, v in _fields(envelope.get(1, b"")) if w == 2}
        api_version = type_meta.get(1, b"").decode("utf-8", "replace")
        kind = type_meta.get(2, b"").decode("utf-8", "replace")
        if envelope.get(3) or envelope.get(4, b"") not in (b"", b"application/vnd.kubernetes.protobuf"):
            raise errors.unsupported_media_type("application/vnd.kubernetes.protobuf (encoded)", ["application/json"])
        root = _ROOTS.get((api_version, kind))
        if root is None:
            raise errors.unsupported_media_type(
                f"application/vnd.kubernetes.protobuf ({api_version} {kind})", ["application/json", "application/yaml"]
            )
        obj = _message(root, envelope.get(2, b""), "", 0)
    except _Malformed as exc:
        raise errors.bad_request(f"the protobuf body could not be decoded: {exc}") from None
    obj["apiVersion"] = api_version
    obj["kind"] = kind
    return obj
