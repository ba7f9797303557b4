"""Encoding of API objects: msgpack in the store, JSON/YAML on the wire, with input limits.

Request bodies are untrusted: nesting depth is checked *before* a recursive parser runs (a deeply
nested body must be a 400, never a RecursionError), YAML anchors/aliases are refused (an alias
bomb expands a few bytes into gigabytes), and YAML timestamps stay strings (Kubernetes objects are
JSON; a datetime would not round-trip).
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

import msgpack
import orjson
import yaml

from .errors import ApiError, bad_request

__all__ = [
    "MAX_DEPTH",
    "decode_object",
    "dumps",
    "encode_object",
    "parse_json",
    "parse_yaml",
]

# Deepest nesting accepted in a request body: real objects (pod affinity terms) stay under ~20,
# while Python's recursive parsers and our own tree walks need headroom below the ~1000 frame limit.
MAX_DEPTH = 64

_packb = msgpack.Packer(use_bin_type=True).pack
_unpackb = msgpack.unpackb


def encode_object(obj: dict[str, Any]) -> bytes:
    """The stored form of an API object; 400 for values it cannot hold (huge ints, lone surrogates)."""
    try:
        return _packb(obj)
    except (OverflowError, ValueError, TypeError) as exc:
        raise bad_request(f"the object cannot be stored: {exc}") from None


def decode_object(data: bytes) -> dict[str, Any]:
    """A fresh, mutable dict for a stored object (each call returns a new tree)."""
    return _unpackb(data, raw=False)


_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes (what the API server sends).

    orjson first (about 8x faster on a pod); what it refuses (a lone surrogate from a
    ``\\ud800`` escape a client sent, an int beyond 64 bits, a non-string key) goes through
    the standard encoder, which sends a lone surrogate back out as the same JSON escape.
    """
    try:
        return orjson.dumps(obj)
    except TypeError:
        return _encoder.encode(obj).encode("utf-8", "backslashreplace")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


# JSON strings (with escapes) are removed before counting brackets, so "[[[" inside a value
# does not count as nesting.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def _json_depth(body: bytes) -> int:
    # Fewer opening brackets in total than the limit cannot nest deeper (the common case).
    opening = body.count(b"{") + body.count(b"[")
    if opening <= MAX_DEPTH:
        return opening
    # Bracket-only skeleton, computed with C-speed regex/translate; the Python loop only sees brackets.
    skeleton = _JSON_STRING.sub(b"", body).translate(None, _BRACKETS)
    if len(skeleton) <= MAX_DEPTH:
        return len(skeleton)
    return max(accumulate(_DEPTH_STEP[c] for c in skeleton), default=0)


# Each byte of a body as b"0" (a digit) or b" " (anything else): runs of digits are then found
# with bytes.find at C speed (a regex search for 19 digits cost 6-8 us per status PATCH body,
# three times orjson's parse of it).
_DIGIT_MASK = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
# 19 digits can exceed a 64-bit integer.
_LONG_RUN = b"0" * 19
# What may follow the digits of a JSON number: whitespace, a separator, a fraction or exponent.
_NUMBER_END = frozenset(b" \t\r\n\f\v,]}.eE")


def _may_hold_long_number(body: bytes) -> bool:
    """Whether ``body`` has a run of 19+ digits ending where a JSON number may end: a number
    orjson would read as a float instead of an int. Digits in strings that go on with other
    characters (the zero-padded ids of hollow containers, "sha256:000...0abc") do not count."""
    mask = body.translate(_DIGIT_MASK)
    start = mask.find(_LONG_RUN)
    while start >= 0:
        end = mask.find(b" ", start)
        if end < 0 or body[end] in _NUMBER_END:
            return True
        start = mask.find(_LONG_RUN, end)
    return False


def parse_json(body: bytes) -> Any:
    """Parse a JSON request body; malformed or too deeply nested -> ApiError 400."""
    if _json_depth(body) > MAX_DEPTH:
        raise bad_request(f"the JSON body is nested deeper than {MAX_DEPTH} levels")
    if not _may_hold_long_number(body):
        # orjson (3x faster) would read an integer of 19+ digits as a float; anything it
        # refuses gets the standard parser's verdict and message below.
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(body, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise bad_request(f"the JSON body is nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"the body is not valid JSON: {exc}") from None


_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _JsonLikeLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """SafeLoader without the implicit timestamp type (keeps "2024-01-01T00:00:00Z" a string)."""


_JsonLikeLoader.yaml_implicit_resolvers = {  # type: ignore[attr-defined]
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()  # type: ignore[attr-defined]
}


def _check_yaml_events(text: str) -> None:
    depth = 0
    documents = 0
    for event in yaml.parse(text, Loader=_BaseLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise bad_request("YAML anchors and aliases are not accepted in request bodies")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise bad_request(f"the YAML body is nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise bad_request("the YAML body holds more than one document")


def _check_json_shaped(node: Any, path: str = "") -> None:
    stack = [(node, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise bad_request(f"YAML mapping key {key!r} at {where or '<root>'} is not a string")
                stack.append((item, f"{where}.{key}" if where else key))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            raise bad_request(f"YAML value at {where or '<root>'} is {value}, which JSON cannot hold")
        elif value is not None and not isinstance(value, str | int | float | bool):
            raise bad_request(
                f"YAML value at {where or '<root>'} has type {type(value).__name__}, which JSON cannot hold"
            )


def parse_yaml(body: bytes) -> Any:
    """Parse a YAML request body into JSON-shaped data; anything unsafe or malformed -> 400."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("the YAML body is not valid UTF-8") from None
    try:
        _check_yaml_events(text)
        data = yaml.load(text, Loader=_JsonLikeLoader)  # noqa: S506 - safe loader subclass
    except ApiError:
        raise
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise bad_request(f"the YAML body is nested deeper than {MAX_DEPTH} levels") from None
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        raise bad_request(f"the body is not valid YAML: {exc}") from None
    _check_json_shaped(data)
    return data
