"""edgeplane edge_agent: the node agent.

It joins a node (Node + Lease), runs the pods bound to it in Docker (or a simulated hollow
runtime), probes them, reports their status, serves their logs, and keeps them running from a
local cache while no master is reachable.
"""

from ._agent import AgentConfig as AgentConfig
from ._agent import EdgeAgent as EdgeAgent
from ._agent import make_runtime as make_runtime
from ._agent import run_agent as run_agent
from ._api import ApiError as ApiError
from ._api import ApiSession as ApiSession
from ._api import ApiUnavailable as ApiUnavailable
from ._api import Backoff as Backoff
from ._api import HttpApiSession as HttpApiSession
from ._api import ResourceExpired as ResourceExpired
from ._cache import PodCache as PodCache
from ._hollow import HollowRuntime as HollowRuntime
from ._hollow_runner import run_hollow_nodes as run_hollow_nodes
from ._join import JoinError as JoinError
from ._join import NodeCredentials as NodeCredentials
from ._join import join_or_load as join_or_load
from ._logs import LogRequest as LogRequest
from ._logs import serve_logs as serve_logs
from ._node import NodeLease as NodeLease
from ._node import node_object as node_object
from ._plan import BackoffPolicy as BackoffPolicy
from ._plan import ContainerRecord as ContainerRecord
from ._plan import plan_pod as plan_pod
from ._podspec import HOST_PORTS_ANNOTATION as HOST_PORTS_ANNOTATION
from ._podsync import PodSyncer as PodSyncer
from ._runtime import ContainerInfo as ContainerInfo
from ._runtime import ContainerRuntime as ContainerRuntime
from ._runtime import ContainerRuntimeError as ContainerRuntimeError
from ._runtime import ContainerSpec as ContainerSpec
from ._runtime import EventedRuntime as EventedRuntime
from ._runtime import EventsUnsupported as EventsUnsupported
from ._status import ProbeState as ProbeState
from ._status import compute_pod_status as compute_pod_status


def __getattr__(name: str) -> object:
    # DockerRuntime is loaded on first use (PEP 562): the docker SDK costs ~7 MB of memory,
    # which hollow nodes and pure unit tests never need.
    if name == "DockerRuntime":
        from ._docker import DockerRuntime

        return DockerRuntime
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
