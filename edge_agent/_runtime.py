"""The container runtime interface the pod syncer drives, and the records it exchanges.

Two implementations: `DockerRuntime` (real containers through the Docker SDK) and
`HollowRuntime` (simulated: state changes only, for scale tests). Every container the agent
creates carries labels naming its node, pod and container, so a restarted agent can adopt its
containers and remove those whose pod is gone; several agents may share one engine (a local
cluster), and each only ever touches containers labelled with its own node name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

# Label keys written on every container (the adoption key is pod uid + container name).
LABEL_NODE = "io.edgeplane.node"
LABEL_POD_NAMESPACE = "io.edgeplane.pod.namespace"
LABEL_POD_NAME = "io.edgeplane.pod.name"
LABEL_POD_UID = "io.edgeplane.pod.uid"
LABEL_CONTAINER_NAME = "io.edgeplane.container.name"
# Kept on the container (labels are immutable) so restart counts survive an agent restart.
LABEL_RESTART_COUNT = "io.edgeplane.container.restart-count"
# The grace period to use when the pod is gone and only the container is left (orphan removal).
LABEL_GRACE = "io.edgeplane.pod.termination-grace-period"


class ContainerRuntimeError(Exception):
    """Base of the errors a runtime reports for one operation (never for bad agent state)."""


class EventsUnsupported(ContainerRuntimeError):
    """The runtime cannot report container events (its users relist instead)."""


class ImagePullError(ContainerRuntimeError):
    """The image could not be pulled (unreachable registry, unknown image, refused)."""


class ContainerStartError(ContainerRuntimeError):
    """The container could not be created or started (bad config, port in use, ...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class PortSpec:
    container_port: int
    protocol: str  # "TCP" | "UDP" | "SCTP"
    host_ip: str
    host_port: int | None  # None: the runtime picks one


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """Everything needed to create one container of a pod."""

    node_name: str
    pod_namespace: str
    pod_name: str
    pod_uid: str
    container_name: str
    image: str
    command: list[str] | None
    args: list[str] | None
    env: dict[str, str]
    working_dir: str | None
    hostname: str
    ports: tuple[PortSpec, ...]
    restart_count: int
    grace_seconds: int
    nano_cpus: int | None = None
    mem_limit: int | None = None
    cpu_shares: int | None = None
    tty: bool = False
    stdin: bool = False
    # hostNetwork: the node's network namespace; each containerPort is then the node's port.
    host_network: bool = False

    def labels(self) -> dict[str, str]:
        return {
            LABEL_NODE: self.node_name,
            LABEL_POD_NAMESPACE: self.pod_namespace,
            LABEL_POD_NAME: self.pod_name,
            LABEL_POD_UID: self.pod_uid,
            LABEL_CONTAINER_NAME: self.container_name,
            LABEL_RESTART_COUNT: str(self.restart_count),
            LABEL_GRACE: str(self.grace_seconds),
        }


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """One container as the runtime reports it (observed state, never desired state)."""

    id: str
    pod_namespace: str
    pod_name: str
    pod_uid: str
    container_name: str
    restart_count: int
    grace_seconds: int
    image: str  # as requested in the spec
    image_id: str  # "sha256:..."
    state: str  # "created" | "running" | "exited"
    exit_code: int | None = None
    started_at: float | None = None  # unix seconds
    finished_at: float | None = None
    oom_killed: bool = False
    error: str = ""
    ip: str = ""
    host_ports: dict[str, int] = field(default_factory=dict)  # "80/TCP" -> 32768
    created_at: float = 0.0

    @property
    def running(self) -> bool:
        return self.state == "running"


class ContainerRuntime(Protocol):
    """What the pod syncer needs from a container engine. All methods are trio-friendly."""

    # True for runtimes that run nothing (hollow): probes are then considered successful.
    simulated: bool
    # How containerIDs are prefixed in pod status ("docker", "hollow").
    scheme: str

    async def list_containers(self) -> list[ContainerInfo]:
        """Every container (running or not) that this node's agent created, except those
        whose `start_container` is still in progress (the caller knows about those)."""
        ...

    async def image_id(self, image: str) -> str | None:
        """The local image's ID, or None when it is not present."""
        ...

    async def pull_image(self, image: str) -> str:
        """Pull from its registry; return the image ID. Raises ImagePullError."""
        ...

    async def start_container(self, spec: ContainerSpec) -> ContainerInfo:
        """Create and start. Raises ContainerStartError (the container is then removed)."""
        ...

    async def stop_container(self, container_id: str, grace_seconds: int) -> None:
        """SIGTERM (or the image's stop signal), then SIGKILL after grace_seconds."""
        ...

    async def remove_container(self, container_id: str) -> None:
        """Remove (force); a container already gone is not an error."""
        ...

    async def exec_in(self, container_id: str, command: list[str],
                      timeout: float) -> tuple[int, bytes]:
        """Run a command inside; return (exit code, output). Timeout -> exit code -1."""
        ...

    def logs(self, container_id: str, *, follow: bool, tail: int | None,
             timestamps: bool = False) -> AsyncIterator[bytes]:
        """The container's stdout+stderr, optionally following."""
        ...

    async def aclose(self) -> None:
        ...


class EventedRuntime(ContainerRuntime, Protocol):
    """A runtime that can also say when one of its containers changed (Docker's events), so
    the syncer need not relist every second to notice an exit (the kubelet's evented PLEG)."""

    async def follow_events(self, on_connected: Callable[[], None],
                            on_event: Callable[[str], None]) -> None:
        """Follow this node's container events until cancelled: `on_connected()` once
        subscribed (anything earlier may have been missed: relist), then `on_event(id)` for
        each container that may have changed (exited, removed, started by someone else).
        Returns when the engine ends the stream (it stopped); raises ContainerRuntimeError when
        it cannot be reached, EventsUnsupported when it can never be followed."""
        ...
