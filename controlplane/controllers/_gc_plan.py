"""Garbage-collection decisions over the ownership graph, pure.

Kubernetes' semantics (Garbage Collection, "Cascading deletion"; the garbage collector's
attemptToDeleteItem):
- background: the owner is gone; dependents whose every owner is gone are deleted. A dependent
  with another owner still there is kept, and loses its references to the owners that are gone.
- foreground: the owner carries ``deletionTimestamp`` and the ``foregroundDeletion`` finalizer;
  its dependents are deleted first, and once none that blocks it is left the finalizer is removed
  (the object layer then deletes the owner). A dependent that another owner still holds is not
  deleted: it loses its reference to the owner that waits for it, which can then go.
- orphan: the owner carries the ``orphan`` finalizer; dependents lose their reference to it,
  then the finalizer is removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._pods import meta

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"


@dataclass(frozen=True, slots=True)
class ObjRef:
    """Where an object lives: enough to delete or update it through the registry."""

    plural: str
    namespace: str
    name: str
    uid: str


@dataclass(slots=True)
class GCPlan:
    delete_background: list[ObjRef] = field(default_factory=list)
    delete_foreground: list[ObjRef] = field(default_factory=list)
    # dependent -> owner uids whose references must be removed
    orphan: dict[ObjRef, set[str]] = field(default_factory=dict)
    # owner -> finalizer to remove now that its dependents are handled
    finalize: dict[ObjRef, str] = field(default_factory=dict)
    # dependent kept by another owner -> owner uids whose references must go: owners that are
    # gone, and owners in foreground deletion waiting for it (confirmed against the store first)
    drop_refs: dict[ObjRef, set[str]] = field(default_factory=dict)


def _finalizers(obj: dict) -> list[str]:
    return list(meta(obj).get("finalizers") or [])


def waits_for_dependents(owner: dict) -> bool:
    """In foreground deletion: deleted, with the finalizer that waits for its dependents."""
    return bool(meta(owner).get("deletionTimestamp")) and FOREGROUND in _finalizers(owner)


def plan_gc(objects: dict[ObjRef, dict]) -> GCPlan:
    """One pass over every object that owns or is owned. ``objects`` maps a ref to its object.

    An owner absent from ``objects`` counts as gone (an owner's uid, not its name, identifies
    it); the collector confirms that against the store before it acts on it.
    """
    by_uid = {ref.uid: (ref, obj) for ref, obj in objects.items()}
    dependents: dict[str, list[tuple[ObjRef, dict, dict]]] = {}
    for ref, obj in objects.items():
        for owner in meta(obj).get("ownerReferences") or []:
            dependents.setdefault(owner.get("uid", ""), []).append((ref, obj, owner))
    plan = GCPlan()
    # Dependents that some owner still holds (one present, not waiting for its dependents).
    held: set[ObjRef] = set()

    for ref, obj in objects.items():
        owners = meta(obj).get("ownerReferences") or []
        if not owners or meta(obj).get("deletionTimestamp"):
            continue  # being deleted is a one-way trip: nothing to decide
        gone: set[str] = set()
        waiting: set[str] = set()
        solid = False
        for o in owners:
            uid = o.get("uid", "")
            if uid not in by_uid:
                gone.add(uid)
            elif waits_for_dependents(by_uid[uid][1]):
                waiting.add(uid)
            else:
                solid = True
        if solid:
            held.add(ref)
            if gone or waiting:
                plan.drop_refs[ref] = gone | waiting
        elif not waiting:
            plan.delete_background.append(ref)

    for uid, (ref, obj) in by_uid.items():
        if not meta(obj).get("deletionTimestamp"):
            continue
        fins = _finalizers(obj)
        deps = dependents.get(uid, [])
        if ORPHAN in fins:
            for dref, _dobj, _o in deps:
                plan.orphan.setdefault(dref, set()).add(uid)
            if not deps:
                plan.finalize[ref] = ORPHAN
        elif FOREGROUND in fins:
            blocking = [d for d in deps if d[2].get("blockOwnerDeletion")]
            for dref, dobj, _o in deps:
                if not meta(dobj).get("deletionTimestamp") and dref not in held:
                    plan.delete_foreground.append(dref)
            if not blocking:
                plan.finalize[ref] = FOREGROUND
    return plan
