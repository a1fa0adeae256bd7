"""``skyctl sim --plot``: one figure comparing the policies (matplotlib, an optional extra).

Top to bottom, on one shared time axis:

- spot availability per zone from the trace, drawn once (it is the same for
  every policy);
- one panel per policy: READY replicas by kind (on-demand under spot, stacked)
  against the target and N;
- cumulative cost of every policy together, with the on-demand-only cost and
  the lower bound, so the curves compare at a glance.

Every legend sits outside its panel, on the right, so it never covers data.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from skyctl.sim.report import SimResult
from skyctl.traces import Trace

SPOT, ONDEMAND = "#1f77b4", "#d62728"
LEGEND = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": "small", "frameon": False}


#: one colour per policy's cost curve: none of them the on-demand red or the spot blue
POLICY_COLOURS = ["#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]


def plot_results(results: Sequence[SimResult], trace: Trace, path: str) -> None:
    """Write a PNG to ``path``; ``trace`` is the replayed window."""
    fig = figure(results, trace)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def figure(results: Sequence[SimResult], trace: Trace) -> Figure:
    """The comparison figure (see the module docstring)."""
    hours_end = trace.ticks * trace.gap_seconds / 3600.0
    zones = len(trace.zones)
    heights = [max(1.2, 0.28 * zones)] + [1.6] * len(results) + [2.4]
    fig, axes = plt.subplots(
        len(heights),
        1,
        figsize=(13, sum(heights) + 1.0),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    zone_ax, *ready_axes, cost_ax = axes[:, 0]

    avail = [[1.0 if a else 0.0 for a in z.available] for z in trace.zones]
    zone_ax.imshow(
        avail,
        aspect="auto",
        interpolation="nearest",
        cmap="Greens",
        extent=(0, hours_end, zones - 0.5, -0.5),
        vmin=0,
        vmax=1,
    )
    zone_ax.set_yticks(range(zones), [z.zone for z in trace.zones], fontsize="small")
    zone_ax.set_title(f"trace {trace.name}: spot availability per zone (green = available)")

    top = max([r.replicas for r in results] + [p.target for r in results for p in r.timeline])
    for ax, r in zip(ready_axes, results, strict=True):
        ts = [p.t / 3600.0 for p in r.timeline]
        ax.stackplot(
            ts,
            [p.ready_ondemand for p in r.timeline],
            [p.ready_spot for p in r.timeline],
            labels=["ready on-demand", "ready spot"],
            step="post",
            colors=[ONDEMAND, SPOT],
            alpha=0.8,
        )
        ax.step(ts, [p.target for p in r.timeline], where="post", color="k", lw=0.8, label="target")
        ax.axhline(r.replicas, color="grey", linestyle="--", lw=0.8, label=f"N = {r.replicas}")
        ax.set_ylim(0, top + 0.5)
        ax.set_ylabel("replicas")
        ax.set_title(
            f"{r.policy}: {r.availability:.3%} of the time with N ready, "
            f"{r.preemptions} preemptions, ${r.cost:,.0f}",
            fontsize="medium",
        )
        ax.legend(**LEGEND)

    for i, r in enumerate(results):
        cost_ax.plot(
            [p.t / 3600.0 for p in r.timeline],
            [p.cost for p in r.timeline],
            color=POLICY_COLOURS[i % len(POLICY_COLOURS)],
            lw=1.6,
            label=f"{r.policy}: ${r.cost:,.0f} ({r.cost_over_bound:.2f}x bound)",
        )
    first = results[0] if results else None
    if first is not None:
        cost_ax.plot(
            [0, hours_end],
            [0, first.ondemand_cost],
            linestyle="--",
            color=ONDEMAND,
            label=f"on-demand only: ${first.ondemand_cost:,.0f}",
        )
        cost_ax.plot(
            [0, hours_end],
            [0, first.lower_bound],
            linestyle=":",
            color="grey",
            label=f"lower bound: ${first.lower_bound:,.0f} at the end",
        )
    cost_ax.set_title("cumulative cost over time")
    cost_ax.set_ylabel("$")
    cost_ax.set_xlabel("hours")
    cost_ax.legend(**LEGEND)
    fig.tight_layout()
    return fig
