"""OpenAPI documents for kubectl, generated from the compact schema in `_openapi_schema`.

What kubectl 1.32 reads:
- `/openapi/v3` (the index) and `/openapi/v3/<api/v1|apis/<group>/<version>>`: `explain` walks
  `components.schemas` (found by `x-kubernetes-group-version-kind`), client-side `apply`
  computes strategic merge patches from the `x-kubernetes-patch-merge-key` /
  `x-kubernetes-patch-strategy` extensions, and `--validate=strict` (the default) checks
  that the PATCH operation of the kind lists a `fieldValidation` query parameter; if it does,
  kubectl leaves validation to the server (`?fieldValidation=Strict`).
- `/openapi/v2` is fetched only as protobuf by client-go; we serve the same model as JSON for
  other clients, and kubectl falls back to v3 / its compiled-in types when v2 is refused.

All documents are deterministic and built once per process; callers must not mutate them.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from . import _openapi_schema as s
from .kinds import RESOURCES, ResourceType, group_versions

__all__ = ["openapi_v2", "openapi_v3_index", "openapi_v3", "unknown_fields", "definition_name"]

_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_TIME = s.META + "Time"
_MICRO_TIME = s.META + "MicroTime"
_PATCH = s.META + "Patch"
_STATUS = s.META + "Status"
_DELETE_OPTIONS = s.META + "DeleteOptions"
_WATCH_EVENT = s.META + "WatchEvent"
_SPECIAL = {"Quantity": _QUANTITY, "IntOrString": _INT_OR_STRING, "Time": _TIME, "MicroTime": _MICRO_TIME}
_VERSION = "v1.32.0"  # the Kubernetes API version these documents describe
_PATCH_CONTENT_TYPES = ("application/json-patch+json", "application/merge-patch+json",
                        "application/strategic-merge-patch+json", "application/apply-patch+yaml")


def definition_name(short: str) -> str:
    return _SPECIAL.get(short) or s.full_name(short)


def _ref(name: str, v3: bool) -> dict:
    return {"$ref": ("#/components/schemas/" if v3 else "#/definitions/") + name}


def _type_schema(t: str, v3: bool) -> dict:
    prim: dict[str, dict] = {
        "string": {"type": "string"},
        "integer": {"type": "integer", "format": "int32"},
        "int64": {"type": "integer", "format": "int64"},
        "number": {"type": "number", "format": "double"},
        "boolean": {"type": "boolean"},
        "byte": {"type": "string", "format": "byte"},
        "object": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    }
    if t in prim:
        return dict(prim[t])
    item = s.list_item(t)
    if item is not None:
        return {"type": "array", "items": _type_schema(item, v3)}
    value = s.map_value(t)
    if value is not None:
        return {"type": "object", "additionalProperties": _type_schema(value, v3)}
    name = definition_name(t)
    if v3:
        # kube-openapi wraps references in allOf so siblings (description) are allowed;
        # kubectl's strategicpatch.PatchMetaFromOpenAPIV3 resolves exactly this shape.
        return {"allOf": [_ref(name, v3)], "default": {}}
    return _ref(name, v3)


def _property(f: s.FieldInfo, v3: bool) -> dict:
    prop = _type_schema(f.type, v3)
    prop["description"] = f.description
    merge_key = s.patch_merge_key(f.patch)
    strategy = s.patch_strategy(f.patch)
    if merge_key:
        prop["x-kubernetes-patch-merge-key"] = merge_key
    if strategy:
        prop["x-kubernetes-patch-strategy"] = strategy
    if s.list_item(f.type) is not None:
        if merge_key:
            prop["x-kubernetes-list-type"] = "map"
            prop["x-kubernetes-list-map-keys"] = [merge_key]
        elif strategy == "merge":
            prop["x-kubernetes-list-type"] = "set"
        else:
            prop["x-kubernetes-list-type"] = "atomic"
    return prop


def _gvk(short: str) -> list[dict] | None:
    gvk = s.KIND_DEFS.get(short)
    if gvk is None:
        return None
    return [{"group": gvk[0], "version": gvk[1], "kind": gvk[2]}]


def _definition(short: str, v3: bool) -> dict:
    desc, _ = s.DEFS[short]
    fields = s.fields_of(short)
    out: dict = {
        "description": desc,
        "type": "object",
        "properties": {name: _property(f, v3) for name, f in sorted(fields.items())},
    }
    req = sorted(name for name, f in fields.items() if f.required)
    if req:
        out["required"] = req
    gvk = _gvk(short)
    if gvk:
        out["x-kubernetes-group-version-kind"] = gvk
    return out


def _special_definitions(v3: bool) -> dict[str, dict]:
    quantity_desc = ("Quantity is a fixed-point representation of a number, e.g. '500m' (0.5 cpu) or '128Mi' "
                     "(134217728 bytes). Serialized as a string.")
    int_or_string_desc = "IntOrString is a type that can hold an int32 or a string."
    defs = {
        _QUANTITY: ({"description": quantity_desc, "oneOf": [{"type": "string"}, {"type": "number"}]} if v3
                    else {"description": quantity_desc, "type": "string"}),
        _INT_OR_STRING: ({"description": int_or_string_desc, "x-kubernetes-int-or-string": True,
                          "anyOf": [{"type": "integer"}, {"type": "string"}]} if v3
                         else {"description": int_or_string_desc, "type": "string", "format": "int-or-string"}),
        _TIME: {"description": "Time is a wrapper around time.Time which supports correct marshaling to YAML and "
                "JSON, in RFC 3339 form.", "type": "string", "format": "date-time"},
        _MICRO_TIME: {"description": "MicroTime is version of Time with microsecond level precision.",
                      "type": "string", "format": "date-time"},
        _PATCH: {"description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH "
                 "request body.", "type": "object"},
        _STATUS: {"description": "Status is a return value for calls that don't return other objects.",
                  "type": "object", "x-kubernetes-preserve-unknown-fields": True,
                  "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Status"}]},
        _DELETE_OPTIONS: {"description": "DeleteOptions may be provided when deleting an API object.",
                          "type": "object", "x-kubernetes-preserve-unknown-fields": True},
        _WATCH_EVENT: {"description": "Event represents a single event to a watched resource.", "type": "object",
                       "required": ["type", "object"],
                       "properties": {"type": {"type": "string"},
                                      "object": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}},
    }
    return defs


def _list_definition(rt: ResourceType, v3: bool) -> dict:
    item = _type_schema(rt.kind, v3)
    return {
        "description": f"{rt.list_kind} is a list of {rt.kind} objects.",
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": _property(s.fields_of("Pod")["apiVersion"], v3),
            "kind": _property(s.fields_of("Pod")["kind"], v3),
            "items": {"type": "array", "items": item, "description": f"List of {rt.plural}."},
            "metadata": {**_type_schema("ListMeta", v3), "description": "Standard list metadata."},
        },
        "x-kubernetes-group-version-kind": [{"group": rt.group, "version": rt.version, "kind": rt.list_kind}],
    }


def _referenced(roots: list[str]) -> list[str]:
    """Definitions reachable from roots (short names), in a stable order."""
    seen: dict[str, None] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in s.DEFS:
            continue
        seen[name] = None
        for f in s.fields_of(name).values():
            t = f.type
            while True:
                inner = s.list_item(t) or s.map_value(t)
                if inner is None:
                    break
                t = inner
            if t in s.DEFS and t not in seen:
                todo.append(t)
    return sorted(seen)


# --- paths -----------------------------------------------------------------------------------------


def _qparam(name: str, desc: str, type_: str = "string", v3: bool = True) -> dict:
    if v3:
        return {"name": name, "in": "query", "description": desc, "schema": {"type": type_, "uniqueItems": True}}
    return {"name": name, "in": "query", "description": desc, "type": type_, "uniqueItems": True}


def _write_params(v3: bool, *, patch: bool = False) -> list[dict]:
    params = [
        _qparam("dryRun", "When present, indicates that modifications should not be persisted. Valid values: "
                "All.", v3=v3),
        _qparam("fieldManager", "fieldManager is a name associated with the actor or entity that is making these "
                "changes.", v3=v3),
        _qparam("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request "
                "(POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn (the "
                "default), Strict.", v3=v3),
    ]
    if patch:
        params.append(_qparam("force", "Force is going to \"force\" Apply requests.", "boolean", v3))
    return params


_LIST_PARAMS = (
    ("continue", "The continue option should be set when retrieving more results from the server.", "string"),
    ("fieldSelector", "A selector to restrict the list of returned objects by their fields.", "string"),
    ("labelSelector", "A selector to restrict the list of returned objects by their labels.", "string"),
    ("limit", "limit is a maximum number of responses to return for a list call.", "integer"),
    ("resourceVersion", "resourceVersion sets a constraint on what resource versions a request may be served "
     "from.", "string"),
    ("timeoutSeconds", "Timeout for the list/watch call.", "integer"),
    ("watch", "Watch for changes to the described resources and return them as a stream of add, update, and "
     "remove notifications.", "boolean"),
    ("allowWatchBookmarks", "allowWatchBookmarks requests watch events with type \"BOOKMARK\".", "boolean"),
)


def _path_param(name: str, desc: str, v3: bool) -> dict:
    if v3:
        return {"name": name, "in": "path", "description": desc, "required": True,
                "schema": {"type": "string", "uniqueItems": True}}
    return {"name": name, "in": "path", "description": desc, "required": True, "type": "string",
            "uniqueItems": True}


def _operation(op_id: str, action: str, desc: str, gvk: dict, resp: str, v3: bool, params: list[dict],
               body: str | None = None, patch: bool = False) -> dict:
    op: dict = {"description": desc, "operationId": op_id, "tags": [gvk["group"] or "core"],
                "x-kubernetes-action": action, "x-kubernetes-group-version-kind": dict(gvk)}
    if v3:
        op["parameters"] = params
        if body is not None:
            types = _PATCH_CONTENT_TYPES if patch else ("*/*",)
            op["requestBody"] = {"required": True, "content": {t: {"schema": _ref(body, True)} for t in types}}
        op["responses"] = {"200": {"description": "OK", "content": {
            t: {"schema": _ref(resp, True)} for t in ("application/json", "application/yaml")}},
            "401": {"description": "Unauthorized"}}
    else:
        p = list(params)
        if body is not None:
            p.insert(0, {"name": "body", "in": "body", "required": True, "schema": _ref(body, False)})
        op["parameters"] = p
        op["consumes"] = list(_PATCH_CONTENT_TYPES) if patch else ["*/*"]
        op["produces"] = ["application/json", "application/yaml"]
        op["schemes"] = ["https"]
        op["responses"] = {"200": {"description": "OK", "schema": _ref(resp, False)},
                           "401": {"description": "Unauthorized"}}
    return op


def _paths_for(rt: ResourceType, v3: bool) -> dict[str, dict]:
    prefix = f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"
    gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    kind_def = definition_name(rt.kind)
    list_def = s.full_name(rt.kind)[: -len(rt.kind)] + rt.list_kind
    scope = "Namespaced" if rt.namespaced else ""
    ns = "/namespaces/{namespace}" if rt.namespaced else ""
    pretty = _qparam("pretty", "If 'true', then the output is pretty printed.", v3=v3)
    ns_param = [_path_param("namespace", "object name and auth scope, such as for teams and projects", v3)] \
        if rt.namespaced else []
    name_param = _path_param("name", f"name of the {rt.kind}", v3)
    list_params = [_qparam(n, d, t, v3) for n, d, t in _LIST_PARAMS]
    paths: dict[str, dict] = {}
    paths[f"{prefix}{ns}/{rt.plural}"] = {
        "get": _operation(f"list{scope}{rt.kind}", "list", f"list or watch objects of kind {rt.kind}", gvk,
                          list_def, v3, list_params),
        "post": _operation(f"create{scope}{rt.kind}", "post", f"create a {rt.kind}", gvk, kind_def, v3,
                           _write_params(v3), body=kind_def),
        "delete": _operation(f"deletecollection{scope}{rt.kind}", "deletecollection",
                             f"delete collection of {rt.kind}", gvk, _STATUS, v3, list_params, body=_DELETE_OPTIONS),
        "parameters": ns_param + [pretty],
    }
    if rt.namespaced:
        paths[f"{prefix}/{rt.plural}"] = {
            "get": _operation(f"list{rt.kind}ForAllNamespaces", "list", f"list or watch objects of kind {rt.kind}",
                              gvk, list_def, v3, list_params),
            "parameters": [pretty],
        }
    item = f"{prefix}{ns}/{rt.plural}/{{name}}"
    paths[item] = {
        "get": _operation(f"read{scope}{rt.kind}", "get", f"read the specified {rt.kind}", gvk, kind_def, v3, []),
        "put": _operation(f"replace{scope}{rt.kind}", "put", f"replace the specified {rt.kind}", gvk, kind_def,
                          v3, _write_params(v3), body=kind_def),
        "patch": _operation(f"patch{scope}{rt.kind}", "patch", f"partially update the specified {rt.kind}", gvk,
                            kind_def, v3, _write_params(v3, patch=True), body=_PATCH, patch=True),
        "delete": _operation(f"delete{scope}{rt.kind}", "delete", f"delete a {rt.kind}", gvk, _STATUS, v3,
                             [_qparam("gracePeriodSeconds", "The duration in seconds before the object should be "
                                      "deleted.", "integer", v3),
                              _qparam("propagationPolicy", "Whether and how garbage collection will be "
                                      "performed: Orphan, Background or Foreground.", v3=v3)],
                             body=_DELETE_OPTIONS),
        "parameters": [name_param, *ns_param, pretty],
    }
    for sub in ("status", "scale"):
        if sub not in rt.subresources:
            continue
        sub_gvk = gvk if sub == "status" else {"group": "autoscaling", "version": "v1", "kind": "Scale"}
        sub_def = kind_def if sub == "status" else s.full_name("Scale")
        title = f"{rt.kind}{'Status' if sub == 'status' else 'Scale'}"
        paths[f"{item}/{sub}"] = {
            "get": _operation(f"read{scope}{title}", "get", f"read {sub} of the specified {rt.kind}", sub_gvk,
                              sub_def, v3, []),
            "put": _operation(f"replace{scope}{title}", "put", f"replace {sub} of the specified {rt.kind}", sub_gvk,
                              sub_def, v3, _write_params(v3), body=sub_def),
            "patch": _operation(f"patch{scope}{title}", "patch", f"partially update {sub} of the specified "
                                f"{rt.kind}", sub_gvk, sub_def, v3, _write_params(v3, patch=True), body=_PATCH,
                                patch=True),
            "parameters": [name_param, *ns_param, pretty],
        }
    return paths


def _schemas_for(resources: list[ResourceType], v3: bool) -> dict[str, dict]:
    roots = [rt.kind for rt in resources]
    if any("scale" in rt.subresources for rt in resources):
        roots.append("Scale")
    out: dict[str, dict] = {}
    for short in _referenced(roots + ["ListMeta"]):
        out[s.full_name(short)] = _definition(short, v3)
    for rt in resources:
        out[s.full_name(rt.kind)[: -len(rt.kind)] + rt.list_kind] = _list_definition(rt, v3)
    out.update(_special_definitions(v3))
    return dict(sorted(out.items()))


def _resources_of(group_version: str) -> list[ResourceType]:
    return [rt for rt in RESOURCES if rt.api_version == group_version]


# --- public ----------------------------------------------------------------------------------------


@functools.cache
def openapi_v2() -> dict:
    """The Swagger 2.0 document (/openapi/v2) for every served kind."""
    paths: dict[str, dict] = {}
    for rt in RESOURCES:
        paths.update(_paths_for(rt, v3=False))
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": _VERSION},
        "paths": dict(sorted(paths.items())),
        "definitions": _schemas_for(list(RESOURCES), v3=False),
        "securityDefinitions": {"BearerToken": {"description": "Bearer Token authentication", "type": "apiKey",
                                                "name": "authorization", "in": "header"}},
        "security": [{"BearerToken": []}],
    }


def _v3_key(group_version: str) -> str:
    return f"apis/{group_version}" if "/" in group_version else f"api/{group_version}"


def _normalize_gv(path: str) -> str | None:
    """'api/v1' / 'apis/apps/v1' (the index keys) or plain 'v1' / 'apps/v1' -> group/version."""
    path = path.split("?", 1)[0].strip("/")
    if path.startswith("api/"):
        gv = path[len("api/"):]
        return gv if "/" not in gv else None
    if path.startswith("apis/"):
        gv = path[len("apis/"):]
        return gv if gv.count("/") == 1 else None
    return path or None


@functools.cache
def openapi_v3(group_version: str) -> dict | None:
    """The OpenAPI 3.0 document of one group/version ("api/v1", "apis/apps/v1", or "v1",
    "apps/v1"), or None if we do not serve it."""
    gv = _normalize_gv(group_version)
    resources = _resources_of(gv) if gv else []
    if not resources:
        return None
    paths: dict[str, dict] = {}
    for rt in resources:
        paths.update(_paths_for(rt, v3=True))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": _VERSION},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": _schemas_for(resources, v3=True),
            "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication",
                                                "name": "authorization", "in": "header"}},
        },
    }


@functools.cache
def _v3_hash(group_version: str) -> str:
    doc = openapi_v3(group_version)
    return hashlib.sha512(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest().upper()


def openapi_v3_index(base_url_prefix: str = "") -> dict:
    """The /openapi/v3 discovery document: one entry per served group/version whose
    serverRelativeURL carries a content hash, so clients can cache documents forever."""
    paths = {}
    for gv in group_versions():
        key = _v3_key(gv)
        paths[key] = {"serverRelativeURL": f"{base_url_prefix}/openapi/v3/{key}?hash={_v3_hash(gv)}"}
    return {"paths": dict(sorted(paths.items()))}


# --- strict field validation ----------------------------------------------------------------------


def unknown_fields(obj: Any, rtype: Any) -> list[str]:
    """Paths of fields in obj that the kind's schema does not define, in kube-apiserver's
    strict-decoding notation (`spec.containers[0].imagePullPolicyx`). Free-form fields
    (annotations, labels, `object`-typed sub-trees) accept anything."""
    kind = rtype if isinstance(rtype, str) else getattr(rtype, "kind", None)
    if not isinstance(kind, str) or kind not in s.DEFS or not isinstance(obj, Mapping):
        return []
    out: list[str] = []
    _walk(obj, kind, None, out, 0)
    return out


# The API server refuses deeper documents before this; the walk must not recurse without bound.
_MAX_WALK_DEPTH = 100

# What a schema type asks of a value, per type name (see _shape).
_LIST, _MAP, _OBJECT, _ANY = range(4)
_SHAPES: dict[str, tuple[int, Any]] = {}


def _shape(t: str) -> tuple[int, Any]:
    """(_LIST, item type) / (_MAP, value type or None when free-form) / (_OBJECT, its fields)
    / (_ANY, None): computed once per type (every PATCH of an agent walks its body)."""
    shape = _SHAPES.get(t)
    if shape is None:
        item = s.list_item(t)
        mv = s.map_value(t)
        if item is not None:
            shape = (_LIST, item)
        elif mv is not None:
            shape = (_MAP, mv if mv in s.DEFS else None)
        elif t in s.DEFS:
            shape = (_OBJECT, s.fields_of(t))
        else:
            shape = (_ANY, None)
        _SHAPES[t] = shape
    return shape


def _path(at: tuple | None) -> str:
    """The notation of a walk position: a chain of (parent, key) and (parent, index, True)."""
    chain = []
    while at is not None:
        chain.append(at)
        at = at[0]
    text = ""
    for node in reversed(chain):
        if len(node) == 3:
            text += f"[{node[1]}]"
        else:
            text = f"{text}.{node[1]}" if text else str(node[1])
    return text


def _nested(v: Any) -> bool:
    """Whether a walk goes below v (a list or mapping); plain types first: isinstance against
    the Mapping ABC was a tenth of the walk."""
    cls = type(v)
    if cls is dict or cls is list:
        return True
    return cls not in _SCALARS and isinstance(v, list | Mapping)


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _walk(value: Any, t: str, at: tuple | None, out: list[str], depth: int) -> None:
    # Positions are kept as a tuple chain and spelled out only for an unknown field (a path
    # string per field was a third of the walk); scalars are not descended into (no shape
    # below them can report anything).
    if depth > _MAX_WALK_DEPTH:
        return
    kind, arg = _shape(t)
    if kind == _LIST:
        if isinstance(value, list):
            for i, v in enumerate(value):
                if _nested(v):
                    _walk(v, arg, (at, i, True), out, depth + 1)
    elif kind == _MAP:
        if arg is not None and (type(value) is dict or isinstance(value, Mapping)):
            for k, v in value.items():
                if _nested(v):
                    _walk(v, arg, (at, k), out, depth + 1)
    elif kind == _OBJECT and (type(value) is dict or isinstance(value, Mapping)):
        for k, v in value.items():
            f = arg.get(k)
            if f is None:
                out.append(_path((at, k)))
            elif _nested(v):
                _walk(v, f.type, (at, k), out, depth + 1)
