"""The resource registry: which kinds the API serves, with Kubernetes' names and scopes.

Everything the API server needs to route a URL to a kind, answer discovery, default,
validate and tabulate an object is reachable from a `ResourceType`:

    rt = lookup("", "v1", "pods")          # or by_kind("apps/v1", "Deployment")
    rt.default(obj); errs = rt.validate(obj, old)
    rt.table(objs, wide=False, now=...)    # meta.k8s.io/v1 Table body
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from . import _defaults, _validation
from ._kinds_syntax import FieldError as FieldError
from ._kinds_syntax import invalid_message as invalid_message
from ._validation import validate_scale as validate_scale
from .selectors import LabelSelector, SelectorError

__all__ = [
    "FieldError",
    "ResourceType",
    "RESOURCES",
    "lookup",
    "by_kind",
    "by_plural",
    "discovery_resources",
    "api_groups",
    "group_versions",
    "invalid_message",
    "scale_of",
    "unknown_fields",
    "validate_scale",
]

# Every verb Kubernetes serves on a normal collection/object.
STANDARD_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Subresource:
    """A discovery entry `<plural>/<name>`; group/version/kind are the body's if it differs
    from the parent (Scale is autoscaling/v1, Eviction is policy/v1)."""

    name: str
    verbs: tuple[str, ...]
    kind: str = ""
    group: str = ""
    version: str = ""


_STATUS = Subresource("status", ("get", "patch", "update"))
_SCALE = Subresource("scale", ("get", "patch", "update"), "Scale", "autoscaling", "v1")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = STANDARD_VERBS
    #: subresources answered generically by the registry ("status", "scale")
    subresources: frozenset[str] = frozenset()
    #: every subresource listed in discovery (incl. log, eviction, binding, finalize)
    discovery_subresources: tuple[Subresource, ...] = field(default=(), repr=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    def default(self, obj: dict) -> None:
        """Fill Kubernetes' defaults into obj, in place."""
        _defaults.default_object(self.plural, obj)

    def validate(self, obj: dict, old: dict | None = None) -> list[FieldError]:
        """Field errors for obj (old: the stored object on update)."""
        return _validation.validate_object(self.plural, obj, old)

    def invalid_message(self, obj: Mapping, errors: Iterable[FieldError]) -> str:
        meta = _m(obj.get("metadata"))
        name = meta.get("name") or meta.get("generateName") or ""
        return invalid_message(self.kind, str(name), errors)

    def table(self, objs: Iterable[Mapping], wide: bool = False, now: datetime | None = None) -> dict:
        """A meta.k8s.io/v1 Table body (without metadata.resourceVersion)."""
        from .tables import table_for

        return table_for(self, list(objs), wide, now=now)

    def unknown_fields(self, obj: Mapping, subresource: str | None = None) -> list[str]:
        """Paths in obj that the schema does not know (for fieldValidation=Strict|Warn).

        A body of kind Scale (or subresource="scale") is checked against autoscaling/v1 Scale."""
        from .openapi import unknown_fields

        if "scale" in self.subresources and (subresource == "scale" or (
                isinstance(obj, Mapping) and obj.get("kind") == "Scale")):
            return unknown_fields(obj, "Scale")
        return unknown_fields(obj, self)

    def storage_version_hash(self) -> str:
        # apiserver: base64 of the first 8 bytes of sha256("<group>/<version>/<kind>").
        digest = hashlib.sha256(f"{self.group}/{self.version}/{self.kind}".encode()).digest()
        return base64.b64encode(digest[:8]).decode()

    def discovery_entry(self) -> dict:
        """The APIResource object for /api/v1 or /apis/<group>/<version>."""
        entry: dict = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": sorted(self.verbs),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        entry["storageVersionHash"] = self.storage_version_hash()
        return entry


def _m(value: object) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _rt(group: str, kind: str, plural: str, *, namespaced: bool = True, short: tuple[str, ...] = (),
        all_category: bool = False, subs: tuple[Subresource, ...] = (),
        verbs: tuple[str, ...] = STANDARD_VERBS) -> ResourceType:
    version = "v1"
    return ResourceType(
        group=group, version=version, kind=kind, plural=plural, singular=kind.lower(),
        namespaced=namespaced, short_names=short, categories=("all",) if all_category else (),
        verbs=verbs, subresources=frozenset(s.name for s in subs if s.name in ("status", "scale")),
        discovery_subresources=subs,
    )


# The served kinds, in the order Kubernetes' discovery lists them.
RESOURCES: list[ResourceType] = [
    _rt("", "ConfigMap", "configmaps", short=("cm",)),
    _rt("", "Endpoints", "endpoints", short=("ep",)),
    _rt("", "Event", "events", short=("ev",)),
    _rt("", "Namespace", "namespaces", namespaced=False, short=("ns",),
        subs=(Subresource("finalize", ("update",)), _STATUS),
        verbs=("create", "delete", "get", "list", "patch", "update", "watch")),
    _rt("", "Node", "nodes", namespaced=False, short=("no",), subs=(_STATUS,)),
    _rt("", "Pod", "pods", short=("po",), all_category=True, subs=(
        Subresource("binding", ("create",), "Binding"),
        Subresource("eviction", ("create",), "Eviction", "policy", "v1"),
        Subresource("log", ("get",)),
        _STATUS,
    )),
    _rt("", "Service", "services", short=("svc",), all_category=True, subs=(_STATUS,),
        verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")),
    _rt("apps", "Deployment", "deployments", short=("deploy",), all_category=True, subs=(_SCALE, _STATUS)),
    _rt("apps", "ReplicaSet", "replicasets", short=("rs",), all_category=True, subs=(_SCALE, _STATUS)),
    _rt("coordination.k8s.io", "Lease", "leases"),
]

_BY_GVR = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_GVK = {(r.api_version, r.kind): r for r in RESOURCES}
_BY_PLURAL = {r.plural: r for r in RESOURCES}


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    """The kind served at /api(s)/<group>/<version>/.../<plural>, or None (404)."""
    return _BY_GVR.get((group, version, plural))


def by_kind(api_version: str, kind: str) -> ResourceType | None:
    """The kind of a body with this apiVersion/kind, or None."""
    return _BY_GVK.get((api_version, kind))


def by_plural(plural: str) -> ResourceType | None:
    """Plural names are unique across our groups (handy for store keys and tests)."""
    return _BY_PLURAL.get(plural)


def group_versions() -> list[str]:
    """Every served group/version ("v1", "apps/v1", ...)."""
    seen: list[str] = []
    for r in RESOURCES:
        if r.api_version not in seen:
            seen.append(r.api_version)
    return seen


def discovery_resources(group: str, version: str) -> list[dict]:
    """The `resources` of the APIResourceList for a group/version (empty: not served)."""
    out: list[dict] = []
    for r in RESOURCES:
        if r.group != group or r.version != version:
            continue
        out.append(r.discovery_entry())
        for sub in r.discovery_subresources:
            entry: dict = {
                "name": f"{r.plural}/{sub.name}",
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": sub.kind or r.kind,
                "verbs": list(sub.verbs),
            }
            if sub.group or sub.version:
                entry["group"] = sub.group
                entry["version"] = sub.version
            out.append(entry)
    return out


def api_groups() -> list[dict]:
    """The `groups` of the APIGroupList at /apis (the legacy core group is at /api)."""
    groups: dict[str, list[str]] = {}
    for r in RESOURCES:
        if r.group:
            versions = groups.setdefault(r.group, [])
            if r.version not in versions:
                versions.append(r.version)
    out = []
    for name, versions in groups.items():
        gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        out.append({"name": name, "versions": gvs, "preferredVersion": gvs[0]})
    return out


def unknown_fields(obj: Mapping, rtype: ResourceType | str) -> list[str]:
    """Fields of obj the schema of rtype (a ResourceType or kind name) does not define."""
    from .openapi import unknown_fields as _unknown

    return _unknown(obj, rtype)


def scale_of(obj: Mapping) -> dict:
    """The autoscaling/v1 Scale view of a Deployment or ReplicaSet (the `scale` subresource)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    try:
        selector = str(LabelSelector.from_api(spec.get("selector"))) if spec.get("selector") is not None else ""
    except SelectorError:
        selector = ""
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                     if k in meta},
        "spec": {"replicas": spec.get("replicas", 0)},
        "status": {"replicas": status.get("replicas", 0), "selector": selector},
    }
