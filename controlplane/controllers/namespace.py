"""Namespace controller: a Terminating namespace loses its contents, then disappears.

The object layer does the deleting (``Registry.finalize_namespace``, which the DELETE call also
runs once); this controller keeps calling it until the namespace is gone, because pods under
graceful deletion hold the namespace until their agents confirm them stopped.
"""

from __future__ import annotations

from typing import Any

from ._base import QueueController
from ._informer import Informer, object_key
from ._pods import meta

# Re-check a namespace that still has content this often (pods finish their grace period).
RECHECK_SECONDS = 1.0


class NamespaceController(QueueController):
    name = "namespace-controller"

    def __init__(self, registry: Any, namespaces: Informer) -> None:
        super().__init__()
        self.registry = registry
        self.namespaces = namespaces
        namespaces.add_handler(self._on_namespace)

    def _on_namespace(self, old: dict | None, new: dict | None) -> None:
        if new is not None and meta(new).get("deletionTimestamp"):
            self.queue.add(object_key(new))

    async def sync(self, key: str) -> None:
        ns = self.namespaces.get(key)
        if ns is None or not meta(ns).get("deletionTimestamp"):
            return
        if not await self.registry.finalize_namespace(key):
            self.queue.add_after(key, RECHECK_SECONDS)
