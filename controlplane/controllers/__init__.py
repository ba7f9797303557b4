"""Controllers run by the leader: level-triggered loops over informer caches.

Each controller's decisions are pure functions (``_*_plan.py``) tested directly; the controller
classes only enqueue keys from informer events, re-read the cache in ``sync(key)`` and commit
the plan through the Registry with resourceVersion preconditions.
"""

from ._base import QueueController as QueueController
from ._informer import Informer as Informer
from ._nodelifecycle_plan import NodeLifecycleConfig as NodeLifecycleConfig
from ._queue import WorkQueue as WorkQueue
from .deployment import DeploymentController as DeploymentController
from .endpoints import EndpointsController as EndpointsController
from .events import EventRecorder as EventRecorder
from .gc import GarbageCollector as GarbageCollector
from .namespace import NamespaceController as NamespaceController
from .nodelifecycle import NodeLifecycleController as NodeLifecycleController
from .replicaset import ReplicaSetController as ReplicaSetController
