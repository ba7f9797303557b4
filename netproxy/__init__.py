"""edgeplane netproxy: Services + Endpoints -> data-plane rules on this node.

Two modes share one model (:func:`desired_entries`): ``nftables`` (one table of our own,
replaced atomically with ``nft -f``) and ``userspace`` (a trio TCP/UDP balancer). Feed a
:class:`ProxyState` and run :func:`serve_proxy`; :func:`watch_cluster` feeds one from the API.
In an agent::

    state = ProxyState()
    await nursery.start(watch_cluster, api_client, state)   # or state.apply_event(...) from
                                                            # the agent's own watch
    handle = await nursery.start(partial(
        serve_proxy, state, mode="auto", node_addresses=[host_ip],
        table=f"edgeplane-{node_name}"))  # one table per agent when several share a machine

Standalone: ``python -m netproxy --kubeconfig FILE [--mode ...] [--node-address IP]``.
"""

from ._model import Backend as Backend
from ._model import ServiceEntry as ServiceEntry
from ._model import desired_entries as desired_entries
from ._nftables import DEFAULT_TABLE as DEFAULT_TABLE
from ._nftables import NftablesError as NftablesError
from ._nftables import NftablesProxier as NftablesProxier
from ._nftables import nft_available as nft_available
from ._nftables import render_ruleset as render_ruleset
from ._proxier import ProxyError as ProxyError
from ._proxier import ProxyHandle as ProxyHandle
from ._proxier import choose_mode as choose_mode
from ._proxier import serve_proxy as serve_proxy
from ._state import ProxyState as ProxyState
from ._userspace import UserspaceProxier as UserspaceProxier
from ._watch import watch_cluster as watch_cluster
