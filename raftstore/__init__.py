"""edgeplane raftstore: the replicated, versioned key-value store.

Public surface (everything else is private): value types and errors, the command encoders,
the pure state machine ``KVState``, the in-process ``MemoryStore`` and the Raft-replicated
store. Re-exports are one per line (sorted by ruff) so each owner can add theirs without conflicts.
"""

from ._bridge import RaftStore as RaftStore
from ._bridge import open_raft_store as open_raft_store
from ._commands import decode_command as decode_command
from ._commands import encode_batch as encode_batch
from ._commands import encode_delete as encode_delete
from ._commands import encode_noop as encode_noop
from ._commands import encode_put as encode_put
from ._commands import encode_txn as encode_txn
from ._gcpolicy import serve_gc_policy as serve_gc_policy
from ._memory import MemoryStore as MemoryStore
from ._replica import ReplicaConfig as ReplicaConfig
from ._state import KVState as KVState
from ._types import Compacted as Compacted
from ._types import Compare as Compare
from ._types import Event as Event
from ._types import InvalidCommand as InvalidCommand
from ._types import KeyValue as KeyValue
from ._types import Op as Op
from ._types import RangeResult as RangeResult
from ._types import Store as Store
from ._types import StoreError as StoreError
from ._types import StoreUnavailable as StoreUnavailable
from ._types import TxnResult as TxnResult
