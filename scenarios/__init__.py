"""edgeplane scenarios: failover drills a site operator runs to see the site survive.

Each scenario starts its own local cluster (or uses an existing one with ``--kubeconfig``),
deploys the demo app, loads it through the Service VIP and the API, injects a fault, measures,
checks, tears down and prints a report (``--json``: one JSON object). Run one as
``python -m scenarios.<module>`` or ``edgectl scenario run <name>``; in code::

    from scenarios import SCENARIOS
    report = SCENARIOS["leader-failover"].run(ci=True)
    assert report.passed, report.render()
"""

from ._harness import ApiWriter as ApiWriter
from ._harness import ScenarioError as ScenarioError
from ._harness import Site as Site
from ._harness import VipTraffic as VipTraffic
from ._registry import SCENARIOS as SCENARIOS
from ._report import Report as Report
from ._runner import Param as Param
from ._runner import Run as Run
from ._runner import Scenario as Scenario
