"""A ``skyctl sim`` report as one standalone web page (``skyctl sim ... --html FILE``).

The page carries everything inline (styles, uPlot, data, script), so it opens
from a file, mails and archives as one file: the results table, then per
policy its ready replicas (spot, on-demand, target) over time, and the
policies' cumulative cost side by side against on-demand only.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

from skyctl.console.web import environment, script_json
from skyctl.sim.report import COLUMNS, SimResult, _row


def _static(name: str) -> str:
    return resources.files("skyctl.console").joinpath("static", name).read_text()


def series(results: Sequence[SimResult]) -> dict[str, object]:
    """The charts' data per policy: ready replicas (spot, on-demand, target) from each
    interval's start, and the cumulative cost at each interval's end."""
    out: dict[str, object] = {}
    for r in results:
        if not r.timeline:
            continue
        t = [p.t / 3600.0 for p in r.timeline]
        ends = [*t[1:], r.hours]  # a point's cost is the total at the end of its interval
        out[r.policy] = {
            "ready": [  # the last interval's values held to the window's end
                [*t, r.hours],
                [*(p.ready_spot for p in r.timeline), r.timeline[-1].ready_spot],
                [*(p.ready_ondemand for p in r.timeline), r.timeline[-1].ready_ondemand],
                [*(p.target for p in r.timeline), r.timeline[-1].target],
            ],
            "cost": [[0.0, *ends], [0.0, *(round(p.cost, 4) for p in r.timeline)]],
            "ondemand_cost": r.ondemand_cost,
            "hours": r.hours,
        }
    return out


def render(results: Sequence[SimResult], *, command: str = "") -> str:
    first = results[0] if results else None
    data = script_json(series(results))
    return (
        environment()
        .get_template("sim.html")
        .render(
            first=first,
            head=[name for name, _ in COLUMNS],
            rows=[_row(r) for r in results],
            command=command,
            data=data,
            css=_static("console.css"),
            uplot_css=_static("uPlot.min.css"),
            uplot_js=_static("uPlot.iife.min.js").replace("</", "<\\/"),
            script=_static("simpage.js"),
        )
    )
