"""The scheduler: binds pending pods to nodes (filters, then scores), in batches."""

from ._framework import FitError as FitError
from ._framework import Scheduler as Scheduler
from ._framework import ScheduleResult as ScheduleResult
from ._service import SchedulerService as SchedulerService
from ._snapshot import NodeInfo as NodeInfo
from ._snapshot import PodInfo as PodInfo
from ._snapshot import Snapshot as Snapshot
