"""``skyctl sim --plot``: one row of panels per policy (matplotlib, an optional extra).

Panels: READY replicas by kind (spot stacked on on-demand) against the target
and N; location availability from the trace (one row per zone); cumulative
cost against the lower bound accumulated over the same time.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from skyctl.sim.report import SimResult
from skyctl.traces import Trace


def plot_results(results: Sequence[SimResult], trace: Trace, path: str) -> None:
    """Write a PNG to ``path``; ``trace`` is the replayed window."""
    rows = max(1, len(results))
    fig, axes = plt.subplots(rows, 3, figsize=(18, 3.2 * rows), squeeze=False)
    hours = [i * trace.gap_seconds / 3600.0 for i in range(trace.ticks + 1)]
    avail = [[1.0 if a else 0.0 for a in z.available] for z in trace.zones]
    for row, r in zip(axes, results, strict=False):
        ready_ax, zone_ax, cost_ax = row
        ts = [p.t / 3600.0 for p in r.timeline]
        spot = [p.ready_spot for p in r.timeline]
        od = [p.ready_ondemand for p in r.timeline]
        ready_ax.stackplot(
            ts,
            od,
            spot,
            labels=["on-demand", "spot"],
            step="post",
            colors=["#d62728", "#1f77b4"],
            alpha=0.8,
        )
        ready_ax.step(
            ts,
            [p.target for p in r.timeline],
            where="post",
            color="k",
            linewidth=0.8,
            label="target",
        )
        ready_ax.axhline(r.replicas, color="grey", linestyle="--", linewidth=0.8, label="N")
        ready_ax.set_title(f"{r.policy}: ready replicas ({r.availability:.3%} with N ready)")
        ready_ax.set_xlabel("hours")
        ready_ax.legend(loc="upper right", fontsize="small")

        zone_ax.imshow(
            avail,
            aspect="auto",
            interpolation="nearest",
            cmap="Greens",
            extent=(0, hours[-1], len(avail) - 0.5, -0.5),
            vmin=0,
            vmax=1,
        )
        zone_ax.set_yticks(range(len(trace.zones)), [z.zone for z in trace.zones], fontsize="small")
        zone_ax.set_title("spot availability per zone (green = available)")
        zone_ax.set_xlabel("hours")

        cost_ax.plot(ts, [p.cost for p in r.timeline], label=f"{r.policy} ${r.cost:,.0f}")
        cost_ax.plot(
            [0, hours[-1]],
            [0, r.lower_bound],
            linestyle=":",
            color="grey",
            label=f"lower bound ${r.lower_bound:,.0f} (end)",
        )
        cost_ax.plot(
            [0, hours[-1]],
            [0, r.ondemand_cost],
            linestyle="--",
            color="#d62728",
            label=f"on-demand only ${r.ondemand_cost:,.0f}",
        )
        cost_ax.set_title(f"cumulative cost ({r.cost_over_bound:.2f}x the bound)")
        cost_ax.set_xlabel("hours")
        cost_ax.set_ylabel("$")
        cost_ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
