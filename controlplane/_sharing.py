"""Structural sharing of decoded objects held by long-lived caches (the leader's informers).

30,000 pods decode to ~7.5 KB of Python objects each, most of it dicts and lists that are the
same in every pod of a ReplicaSet (labels, owner references, the containers, the node
selector, empty ``securityContext``/``lastState`` maps) or of pods that changed in the same
second (conditions with one ``lastTransitionTime``). :func:`share` replaces such subtrees by
one canonical copy, the way a compiler interns constants.

Objects returned by :func:`share` are shared across cached objects: like every object an
informer hands out they must be treated as immutable (copy before changing; controllers
deep-copy or build new dicts, and tests/controllers check that no cached object changes).
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["share"]

# Canonical subtrees and strings kept (keyed by their JSON, ~300 B an entry): the label sets,
# owner references and containers of a few thousand ReplicaSets and the conditions of the
# last minutes; past it the table starts afresh (already shared subtrees stay shared) so
# one-off parts (timestamps, names) cannot grow it forever. 16,384 entries cost ~5 MB.
TABLE_LIMIT = 16_384
# Strings longer than this are rarely repeated (messages, certificates): not worth a lookup.
MAX_STRING = 64

_table: dict[Any, Any] = {}

# Fields of the sections (metadata, spec, status) unique per object: not looked up at all.
_UNIQUE_FIELDS = frozenset({"name", "uid", "resourceVersion", "podIP", "podIPs", "hostIP"})
# Keys whose values are unique per object (or per container) below the sections: a subtree
# holding one directly is never shared (its own children still are), so the table is not
# filled with one-off entries. (An owner reference's uid is shared by all the owner's pods.)
_UNIQUE_KEYS = frozenset({"containerID"})


def _canon(value: Any) -> tuple[Any, bool]:
    """(the canonical copy of ``value``, whether it is unique to its object and so not shared)."""
    # the tag keeps a dict and a list of the same JSON apart (and both apart from strings);
    # a list's int indexes are never in _UNIQUE_KEYS
    tag, entries = (0, value.items()) if isinstance(value, dict) else (1, enumerate(value))
    try:
        # the JSON (orjson, ~1 us) is the subtree's identity
        key: tuple[int, bytes] | None = (tag, orjson.dumps(value))
    except orjson.JSONEncodeError:  # an int beyond 64 bits: kept as it is
        key = None
    if key is not None:
        found = _table.get(key)
        if found is not None:
            # seen before (the containers of every pod of a ReplicaSet): its canonical copy,
            # without a walk through its parts
            return found, False
    unique = False
    for k, v in entries:
        if k in _UNIQUE_KEYS:
            unique = True
        elif isinstance(v, (dict, list)):
            value[k], u = _canon(v)
            unique = unique or u
        elif isinstance(v, str) and len(v) <= MAX_STRING:
            value[k] = _intern(v, v)
    if unique or key is None:
        return value, True
    return _intern(key, value), False


def _intern(key: Any, value: Any) -> Any:
    """The canonical value for ``key`` (a short string itself, or a subtree's tagged JSON)."""
    found = _table.get(key)
    if found is not None:
        return found
    if len(_table) >= TABLE_LIMIT:
        _table.clear()
    _table[key] = value
    return value


def _same(a: Any, b: Any) -> bool:
    """Equal, and as JSON too (``==`` holds between 1, 1.0 and True)."""
    if a is b:
        return True
    if a != b:
        return False
    try:
        return orjson.dumps(a) == orjson.dumps(b)
    except orjson.JSONEncodeError:
        return False


def share(obj: dict[str, Any], prev: dict[str, Any] | None = None) -> dict[str, Any]:
    """``obj`` (freshly decoded, owned by the caller) with its repeated subtrees and short
    strings replaced by canonical shared copies; the top-level dict and its sections
    (metadata, spec, status) stay ``obj``'s own. From then on ``obj`` is immutable.

    ``prev``, an earlier version of the same object that went through :func:`share`: a part
    equal to its counterpart there is taken from it instead of being looked up again (an
    update of a pod's status leaves its metadata and spec alone: a third of the cost)."""
    for name, section in obj.items():
        if isinstance(section, dict):
            before = prev.get(name) if prev is not None else None
            if not isinstance(before, dict):
                before = None
            for k, v in section.items():
                if k in _UNIQUE_FIELDS:
                    continue
                if isinstance(v, (dict, list)):
                    if before is not None:
                        old = before.get(k)
                        if old is not None and _same(old, v):
                            section[k] = old
                            continue
                    section[k] = _canon(v)[0]
                elif isinstance(v, str) and len(v) <= MAX_STRING:
                    section[k] = _intern(v, v)
        elif isinstance(section, str) and len(section) <= MAX_STRING:  # apiVersion, kind
            obj[name] = _intern(section, section)
    return obj
