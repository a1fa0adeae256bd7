"""``skyctl sim``: replay real spot traces through the controller's own policies.

:func:`simulate` runs one policy over one trace window under a virtual clock
(see :mod:`skyctl.sim.engine` for the model, :mod:`skyctl.sim.report` for the
figures); :func:`skyctl.sim.plot.plot_results` draws them (matplotlib is an
optional extra).
"""

from skyctl.sim.engine import DEFAULT_COLD_START, SimConfig, Simulation, simulate
from skyctl.sim.report import SimResult, format_table, lower_bound, to_json

__all__ = [
    "DEFAULT_COLD_START",
    "SimConfig",
    "SimResult",
    "Simulation",
    "format_table",
    "lower_bound",
    "simulate",
    "to_json",
]
