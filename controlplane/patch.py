"""The three patch formats of `kubectl patch` / `kubectl apply`:

- JSON merge patch (RFC 7386, `application/merge-patch+json`): objects merge, null deletes,
  everything else (lists included) replaces.
- JSON patch (RFC 6902, `application/json-patch+json`): add/remove/replace/move/copy/test on
  JSON pointers (RFC 6901).
- Strategic merge patch (`application/strategic-merge-patch+json`): merge patch plus
  Kubernetes' list semantics from the schema (containers merge by name, ports by containerPort,
  ...) and the directives `$patch`, `$setElementOrder/<f>`, `$deleteFromPrimitiveList/<f>`,
  `$retainKeys`.

All functions return a new object and never modify their inputs. With ``share=True`` the result
of a merge patch shares with ``target`` the parts the patch does not touch (no copy of a whole
object per PATCH): the caller then treats the two as one (changes neither, or copies first).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from . import _openapi_schema as schema

__all__ = [
    "PatchError",
    "apply_merge_patch",
    "apply_json_patch",
    "apply_strategic_merge_patch",
    "create_merge_patch",
]

# Patches nest no deeper than objects do; the API server rejects deeper JSON before this, but a
# direct caller must not hit RecursionError either.
_MAX_DEPTH = 200


class PatchError(ValueError):
    """The patch is malformed or cannot be applied (a failed `test`, a missing path, ...)."""


def _check_depth(depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise PatchError("patch nesting is too deep")


def _copy(value: Any) -> Any:
    """A private copy of a JSON-shaped value: what copy.deepcopy gives for decoded JSON (equal,
    sharing nothing), ~10x faster (deepcopy's memo and dispatch per value were a fifth of a
    status PATCH's cost). Other types (an in-process caller's tuple, a dict subclass) go to
    deepcopy."""
    cls = type(value)
    if cls is dict:
        return {k: _copy(v) for k, v in value.items()}
    if cls is list:
        return [_copy(v) for v in value]
    if cls is str or cls is int or cls is float or cls is bool or value is None:
        return value
    return copy.deepcopy(value)


# --- RFC 7386 --------------------------------------------------------------------------------


def apply_merge_patch(target: Any, patch: Any, *, share: bool = False) -> Any:
    """RFC 7386 JSON merge patch. ``share``: the result may share with ``target`` the parts
    the patch leaves alone (see the module docstring)."""
    return _merge(target if share else _copy(target), patch, 0)


def _merge(target: Any, patch: Any, depth: int) -> Any:
    """``target`` merged with ``patch``, as new dicts along the patch's paths (``target`` is
    not changed; what the patch does not reach is shared)."""
    _check_depth(depth)
    if not isinstance(patch, dict):
        return _copy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value, depth + 1)
    return out


def create_merge_patch(original: Any, modified: Any) -> Any:
    """The RFC 7386 patch that turns original into modified (apply_merge_patch inverts it).

    Null values inside `modified` cannot be expressed in a merge patch and are dropped."""
    if not isinstance(original, dict) or not isinstance(modified, dict):
        return _copy(modified)
    patch: dict = {}
    for key in original:
        if key not in modified:
            patch[key] = None
    for key, value in modified.items():
        if key not in original:
            patch[key] = _strip_nulls(value)
        elif original[key] != value or type(original[key]) is not type(value):
            if isinstance(original[key], dict) and isinstance(value, dict):
                patch[key] = create_merge_patch(original[key], value)
            else:
                patch[key] = _strip_nulls(value)
    return patch


def _strip_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    return _copy(value)


# --- RFC 6902 --------------------------------------------------------------------------------


def _pointer(path: object) -> list[str]:
    if not isinstance(path, str):
        raise PatchError(f"path must be a string, got {path!r}")
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f'invalid JSON pointer "{path}": must start with "/"')
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list, token: str, path: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchError(f'invalid array index "{token}" in path "{path}"')
    i = int(token)
    limit = len(container) if allow_end else len(container) - 1
    if i > limit:
        raise PatchError(f'array index {i} out of bounds in path "{path}"')
    return i


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    cur = doc
    for tok in tokens[:-1]:
        if isinstance(cur, dict):
            if tok not in cur:
                raise PatchError(f'doc is missing path: "{path}"')
            cur = cur[tok]
        elif isinstance(cur, list):
            cur = cur[_index(cur, tok, path, allow_end=False)]
        else:
            raise PatchError(f'doc is missing path: "{path}"')
    return cur


def _get(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f'doc is missing path: "{path}"')
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, path, allow_end=False)]
    raise PatchError(f'doc is missing path: "{path}"')


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, path, allow_end=True), value)
    else:
        raise PatchError(f'doc is missing path: "{path}"')
    return doc


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f'unable to remove nonexistent key "{last}": missing value at "{path}"')
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, path, allow_end=False))
    raise PatchError(f'doc is missing path: "{path}"')


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true != 1 (Python's bool is an int)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def apply_json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch; the whole patch applies or PatchError is raised."""
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = _copy(target)
    for n, op in enumerate(ops):
        if not isinstance(op, dict):
            raise PatchError(f"operation {n} is not an object")
        kind = op.get("op")
        path = op.get("path")
        if path is None:
            raise PatchError(f'operation {n} ("{kind}") is missing "path"')
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f'operation {n} ("{kind}") is missing "value"')
        if kind == "add":
            doc = _add(doc, path, _copy(op["value"]))
        elif kind == "remove":
            doc, _ = _remove(doc, path)
        elif kind == "replace":
            if _pointer(path):
                _get(doc, path)  # must exist
                doc, _ = _remove(doc, path)
                doc = _add(doc, path, _copy(op["value"]))
            else:
                doc = _copy(op["value"])
        elif kind in ("move", "copy"):
            src = op.get("from")
            if src is None:
                raise PatchError(f'operation {n} ("{kind}") is missing "from"')
            if kind == "move":
                if path != src and path.startswith(src + "/"):
                    raise PatchError(f'cannot move "{src}" into its own child "{path}"')
                doc, value = _remove(doc, src)
            else:
                value = _copy(_get(doc, src))
            doc = _add(doc, path, value)
        elif kind == "test":
            if not _json_equal(_get(doc, path), op["value"]):
                raise PatchError(f'testing value {path} failed')
        else:
            raise PatchError(f'operation {n}: unsupported op "{kind}"')
    return doc


# --- strategic merge patch -----------------------------------------------------------------------

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_ORDER_PREFIX = "$setElementOrder/"
_DELETE_PRIMITIVE_PREFIX = "$deleteFromPrimitiveList/"


def _root_def(rtype: object) -> str | None:
    kind = getattr(rtype, "kind", None) if not isinstance(rtype, str) else rtype
    return kind if isinstance(kind, str) and kind in schema.DEFS else None


def apply_strategic_merge_patch(target: Any, patch: Any, rtype: object, *, share: bool = False) -> Any:
    """Kubernetes strategic merge patch. `rtype` is a ResourceType (or a kind name) that
    selects the schema; unknown parts of the object fall back to merge-patch semantics.
    ``share``: the result may share with ``target`` the parts the patch leaves alone (see the
    module docstring)."""
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object")
    base = target if isinstance(target, dict) else {}
    result = _smp_map(base if share else _copy(base), patch, _root_def(rtype), 0)
    if result is _DELETED:
        return {}
    return result


_DELETED = object()


def _field(defn: str | None, key: str) -> schema.FieldInfo | None:
    if defn is None:
        return None
    return schema.fields_of(defn).get(key)


def _smp_map(target: Mapping, patch: Mapping, defn: str | None, depth: int) -> Any:
    """`target` merged with `patch` as a new dict (`target` is not changed: new dicts and lists
    along the patch's paths, the rest shared); defn names its schema."""
    _check_depth(depth)
    directive = patch.get(_DIRECTIVE)
    if directive is not None:
        if directive == "replace":
            return {k: _copy(v) for k, v in patch.items() if not _is_directive_key(k)}
        if directive == "delete":
            return _DELETED
        if directive != "merge":
            raise PatchError(f'unknown patch type: "{directive}" in map: {dict(patch)!r}')
    target = dict(target)
    retain = patch.get(_RETAIN_KEYS)
    if retain is not None:
        if not isinstance(retain, list) or not all(isinstance(k, str) for k in retain):
            raise PatchError("$retainKeys must be a list of strings")
        # Fields not named are cleared first (union-type fields like strategy.rollingUpdate).
        for key in list(target):
            if key not in retain:
                del target[key]
    for key, value in patch.items():
        if key.startswith(_DELETE_PRIMITIVE_PREFIX):
            field = key[len(_DELETE_PRIMITIVE_PREFIX):]
            if not isinstance(value, list):
                raise PatchError(f"{key} must be a list")
            if isinstance(target.get(field), list):
                target[field] = [v for v in target[field] if v not in value]
            continue
        if _is_directive_key(key):
            continue
        info = _field(defn, key)
        if value is None:
            target.pop(key, None)
            continue
        ftype = info.type if info else None
        if isinstance(value, dict):
            # Maps such as labels have no schema below them: keys merge, null deletes.
            sub_def = ftype if ftype and schema.is_def(ftype) else None
            current = target.get(key)
            merged = _smp_map(current if isinstance(current, dict) else {}, value, sub_def, depth + 1)
            if merged is _DELETED:
                target.pop(key, None)
            else:
                target[key] = merged
        elif isinstance(value, list):
            target[key] = _smp_list(target.get(key), value, info, depth + 1)
        else:
            target[key] = _copy(value)
    for key, order in patch.items():
        if key.startswith(_ORDER_PREFIX):
            field = key[len(_ORDER_PREFIX):]
            if isinstance(target.get(field), list):
                if not isinstance(order, list):
                    raise PatchError(f"{key} must be a list")
                target[field] = _apply_order(target[field], order, _field(defn, field))
    return target


def _is_directive_key(key: str) -> bool:
    return key.startswith("$")


def _smp_list(current: Any, patch: list, info: schema.FieldInfo | None, depth: int) -> list:
    _check_depth(depth)
    strategy = schema.patch_strategy(info.patch) if info else ""
    merge_key = schema.patch_merge_key(info.patch) if info else None
    if "merge" not in strategy.split(","):
        # Atomic list: replace, but honour an explicit {"$patch": "replace"} marker element.
        return [_copy(v) for v in patch if not (isinstance(v, dict) and v.get(_DIRECTIVE) == "replace")]
    current = list(current) if isinstance(current, list) else []
    # {"$patch": "replace"} as an element: the list becomes exactly the other elements.
    if any(isinstance(v, dict) and v.get(_DIRECTIVE) == "replace" and len(v) == 1 for v in patch):
        return [_copy(v) for v in patch if not (isinstance(v, dict) and v.get(_DIRECTIVE) == "replace")]
    if merge_key is None:
        # A set of primitives (finalizers): union, keeping the existing order.
        out = list(current)
        for v in patch:
            if isinstance(v, dict):
                raise PatchError(f"list of primitives cannot contain an object: {v!r}")
            if v not in out:
                out.append(_copy(v))
        return out
    item_type = schema.list_item(info.type) if info else None
    item_def = item_type if item_type and schema.is_def(item_type) else None
    out = list(current)  # items the patch does not merge into are shared (see _smp_map)
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"list merged by key {merge_key!r} cannot contain {item!r}")
        if merge_key not in item:
            raise PatchError(f"map: {item!r} does not contain declared merge key: {merge_key}")
        key_value = item[merge_key]
        pos = next((i for i, v in enumerate(out) if isinstance(v, dict) and v.get(merge_key) == key_value), None)
        directive = item.get(_DIRECTIVE)
        if directive == "delete":
            if pos is not None:
                out.pop(pos)
            continue
        if pos is None:
            merged = _smp_map({}, item, item_def, depth + 1)
            if merged is not _DELETED:
                out.append(merged)
        else:
            merged = _smp_map(out[pos], item, item_def, depth + 1)
            if merged is _DELETED:
                out.pop(pos)
            else:
                out[pos] = merged
    return out


def _apply_order(items: list, order: list, info: schema.FieldInfo | None) -> list:
    """$setElementOrder: items named in `order` come in that order; the rest keep their place
    after them (items only the server knows about, e.g. added by a controller)."""
    merge_key = schema.patch_merge_key(info.patch) if info else None

    def ident(v: Any) -> Any:
        if merge_key is not None and isinstance(v, dict):
            return ("k", repr(v.get(merge_key)))
        return ("v", repr(v))

    wanted = [ident(o) for o in order]
    rank = {w: i for i, w in enumerate(wanted)}
    listed = sorted((v for v in items if ident(v) in rank), key=lambda v: rank[ident(v)])
    rest = [v for v in items if ident(v) not in rank]
    return listed + rest
