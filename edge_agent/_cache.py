"""PodCache: the desired pods of this node on local disk -- the edge autonomy cache.

While no master answers, the agent runs what this cache says; after its own restart it reads
the cache before anything else, so it can adopt its running containers instead of waiting for
(or recreating on) a master. One JSON file per pod uid; each write goes to a temporary file that
is fsync'ed and renamed over the old one (and the directory fsync'ed), so a power cut leaves
either the old or the new pod, never a torn file. Only metadata and spec are kept: the agent
writes status itself, and skipping status keeps pods from being rewritten on every update
(except the per-container ready/started flags, see `_cacheable`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import trio

log = logging.getLogger("edge_agent.cache")

# Metadata fields that change on every write and are not part of what the agent must run.
_VOLATILE_METADATA = ("resourceVersion", "managedFields", "generation")


def _cacheable(pod: dict[str, Any]) -> dict[str, Any]:
    md = {k: v for k, v in (pod.get("metadata") or {}).items() if k not in _VOLATILE_METADATA}
    # Of the status, only which containers were ready/started: an agent restarted without a
    # master resumes from them instead of reporting its pods unready. They change rarely.
    probed = [{k: cs[k] for k in ("name", "containerID", "ready", "started") if k in cs}
              for cs in (pod.get("status") or {}).get("containerStatuses") or []]
    doc = {"apiVersion": pod.get("apiVersion", "v1"), "kind": pod.get("kind", "Pod"),
           "metadata": md, "spec": pod.get("spec") or {}}
    status: dict[str, Any] = {}
    if probed:
        status["containerStatuses"] = probed
    start = (pod.get("status") or {}).get("startTime")
    if start:
        status["startTime"] = start  # set once; keeps the pod's age across agent restarts
    if status:
        doc["status"] = status
    return doc


def _safe_uid(uid: str) -> str:
    if not uid or any(ch in uid for ch in "/\\\0") or uid.startswith("."):
        raise ValueError(f"pod uid {uid!r} cannot name a cache file")
    return uid


class PodCache:
    """Directory of `<uid>.json` pod files. Blocking I/O runs in a worker thread."""

    def __init__(self, directory: str | os.PathLike[str], *, durable: bool = True) -> None:
        self.directory = Path(directory)
        # durable=False skips the fsyncs: for simulated (hollow) nodes, which have nothing to
        # keep running across a power cut, and 1,000 of which would queue on the disk.
        self.durable = durable
        # persist=False keeps the cache in memory only (hollow-node runners: hundreds of
        # simulated nodes in one process, nothing to recover after a restart).
        self.persist = True
        self._written: dict[str, dict[str, Any]] = {}

    def load(self) -> list[dict[str, Any]]:
        """Every cached pod (blocking; called once at start). Unreadable files are skipped."""
        self.directory.mkdir(parents=True, exist_ok=True)
        pods: list[dict[str, Any]] = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                pod = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                log.warning("ignoring unreadable cache file %s: %s", path, exc)
                continue
            uid = str((pod.get("metadata") or {}).get("uid", ""))
            if uid and path.stem == uid:
                self._written[uid] = pod
                pods.append(pod)
        for stale in self.directory.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        return pods

    def _write(self, uid: str, doc: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"{_safe_uid(uid)}.json"
        tmp = self.directory / f".{uid}.tmp"
        data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        if not self.durable:
            return
        dfd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _delete(self, uid: str) -> None:
        try:
            (self.directory / f"{_safe_uid(uid)}.json").unlink()
        except FileNotFoundError:
            return
        self._fsync_dir()

    async def put(self, pod: dict[str, Any]) -> bool:
        """Persist `pod` if what it asks for changed; True when a write happened."""
        if not self.persist:
            # Nothing to recover from: no copy to keep either (a hollow-node runner's pods were
            # each copied here twice per start: on creation and on its status's echo).
            return False
        doc = _cacheable(pod)
        uid = str(doc["metadata"].get("uid", ""))
        if self._written.get(uid) == doc:
            return False
        await trio.to_thread.run_sync(self._write, uid, doc)
        self._written[uid] = doc
        return True

    async def remove(self, uid: str) -> None:
        if not self.persist:
            return
        if uid in self._written or (self.directory / f"{uid}.json").exists():
            self._written.pop(uid, None)
            await trio.to_thread.run_sync(self._delete, uid)

    async def replace_all(self, pods: list[dict[str, Any]]) -> None:
        """Make the cache hold exactly `pods` (after an authoritative list)."""
        keep = {str((p.get("metadata") or {}).get("uid", "")) for p in pods}
        for uid in list(self._written):
            if uid not in keep:
                await self.remove(uid)
        for pod in pods:
            await self.put(pod)

    def uids(self) -> set[str]:
        return set(self._written)
