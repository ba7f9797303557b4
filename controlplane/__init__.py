"""edgeplane controlplane: resource kinds, the object layer (Registry), the API server, the API
client, the scheduler, the controllers, the leader loop and the master process.

Modules are imported where they are used (``from controlplane.registry import Registry``); the
client-side names most users need are also reachable from here, loaded on first use so that
importing a small module such as ``controlplane.errors`` stays cheap:

    ApiClient, ApiError, ClusterUnreachable, Resource      (controlplane.client)
    ClientConfig, load_kubeconfig, write_kubeconfig        (controlplane.kubeconfig)
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ApiClient": "client",
    "ApiError": "client",
    "ClusterUnreachable": "client",
    "Resource": "client",
    "ClientConfig": "kubeconfig",
    "load_kubeconfig": "kubeconfig",
    "write_kubeconfig": "kubeconfig",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
