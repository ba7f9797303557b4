"""Endpoints controller: each Service with a selector gets Endpoints of its matching pods."""

from __future__ import annotations

import copy
from typing import Any

from controlplane.errors import ApiError
from controlplane.selectors import LabelSelector

from ._base import QueueController
from ._endpoints_plan import desired_endpoints, endpoints_differ
from ._informer import Informer, object_key
from ._pods import key_of, meta, namespace_of, split_key


class EndpointsController(QueueController):
    name = "endpoints-controller"

    def __init__(self, registry: Any, services: Informer, pods: Informer, endpoints: Informer) -> None:
        super().__init__()
        self.registry = registry
        self.services, self.pods, self.endpoints = services, pods, endpoints
        self._parsed: dict[int, tuple[dict, LabelSelector]] = {}  # id(selector) -> (it, parsed)
        services.add_handler(self._on_service)
        pods.add_handler(self._on_pod)
        endpoints.add_handler(self._on_endpoints)

    def _on_service(self, old: dict | None, new: dict | None) -> None:
        self.queue.add(object_key(new or old or {}))

    def _on_endpoints(self, old: dict | None, new: dict | None) -> None:
        # Someone else changed or deleted "our" Endpoints: converge them back.
        key = object_key(new or old or {})
        if self.services.get(key) is not None:
            self.queue.add(key)

    def _on_pod(self, old: dict | None, new: dict | None) -> None:
        ns = namespace_of(new or old or {})
        label_sets = [meta(p).get("labels") or {} for p in (old, new) if p is not None]
        for svc in self.services.list(ns):
            selector = (svc.get("spec") or {}).get("selector")
            if not selector:
                continue
            if any(self._selector(selector).matches(labels) for labels in label_sets):
                self.queue.add(key_of(svc))

    def _selector(self, selector: dict) -> LabelSelector:
        # Parsed once per selector, not once per pod event and Service (cached objects are
        # immutable, so the same dict means the same selector).
        found = self._parsed.get(id(selector))
        if found is None or found[0] is not selector:
            if len(self._parsed) >= 4096:
                self._parsed.clear()
            found = self._parsed[id(selector)] = (selector, LabelSelector.from_labels(selector))
        return found[1]

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        svc = self.services.get(key)
        current = self.endpoints.get(key)
        if svc is None:
            if current is not None:
                try:
                    await self.registry.delete(
                        "endpoints", ns, name, preconditions={"uid": meta(current).get("uid")}
                    )
                except ApiError as exc:
                    if exc.code != 404:
                        raise
            return
        if not (svc.get("spec") or {}).get("selector"):
            return  # manually managed Endpoints (Kubernetes leaves them alone too)
        desired = desired_endpoints(svc, self.pods.list(ns))
        if current is None:
            await self.registry.create("endpoints", ns, desired)
        elif endpoints_differ(current, desired):
            body = copy.deepcopy(current)
            body["subsets"] = desired["subsets"]
            labels = desired["metadata"].get("labels")
            if labels:
                body["metadata"]["labels"] = labels
            else:
                body["metadata"].pop("labels", None)
            await self.registry.update("endpoints", ns, name, body)
