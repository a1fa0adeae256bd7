"""``skyctl sim``: replay a spot trace through the placement policies (click command).

The lead adds :data:`sim` to the ``skyctl`` group. Bad input is one line on
stderr and exit status 2; no traceback.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from skyctl.errors import SkyctlError
from skyctl.sim_limits import DEFAULT_COLD_START, MAX_PRICE, MAX_REPLICAS

# The simulator, the policies and the spec parser are imported by `sim` when it runs:
# every skyctl command imports this module (the `sim` command's definition).
if TYPE_CHECKING:
    from skyctl.sim import SimResult
    from skyctl.sim.coldstart import ColdStart
    from skyctl.traces import Trace


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


class _Progress:
    """``Replaying <policy> (2/5)`` with a bar and the time spent, on stderr while a
    terminal shows it (rich); nothing in a pipe or a log, where it would only clutter."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        console = Console(stderr=True)
        self.total = total
        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} policies"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )

    def iterate(self, names: tuple[str | None, ...]) -> Iterator[str | None]:
        task = self.bar.add_task("replaying", total=self.total)
        with self.bar:
            for i, name in enumerate(names, 1):
                label = name or "the spec's policy"
                self.bar.update(task, description=f"replaying {label} ({i}/{self.total})")
                yield name
                self.bar.advance(task)

    def stop(self) -> None:
        self.bar.stop()


def _progress(total: int) -> _Progress:
    return _Progress(total)


class _Finite(click.ParamType):
    """A finite float from ``low`` (``low_open``: above it) to ``high``: NaN, inf and 1e999
    refused."""

    name = "float"

    def __init__(self, low: float, *, low_open: bool = False, high: float = math.inf) -> None:
        self.low, self.low_open, self.high = low, low_open, high

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            f = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(f) or f < self.low or (self.low_open and f == self.low):
            sign = ">" if self.low_open else ">="
            self.fail(f"{value!r}: must be a finite number {sign} {self.low:g}", param, ctx)
        if f > self.high:
            self.fail(f"{value!r}: must be at most {self.high:,.0f}", param, ctx)
        return f


def _window(trace: Trace, start: float | None, hours: float | None) -> tuple[int, int | None]:
    """``--start`` (hours from the trace start) and ``--hours`` as ticks, within the trace."""
    per_hour = 3600.0 / trace.gap_seconds
    total = trace.ticks / per_hour
    first = (start or 0.0) * per_hour
    if first >= trace.ticks - 0.5:
        last = (trace.ticks - 1) / per_hour
        _fail(
            f"--start {start:g} is past the end of trace {trace.name!r} ({total:.1f} h; "
            f"allowed: 0 to {last:.4g}, the last tick's start)"
        )
    start_tick = round(first)
    if hours is None:
        return start_tick, None
    left = trace.ticks - start_tick
    if hours * per_hour > left + 0.5:
        _fail(
            f"--hours {hours:g} goes past the end of trace {trace.name!r}: {left / per_hour:.4g} h "
            f"left from --start {start or 0:g} (the trace has {total:.4g} h)"
        )
    return start_tick, min(max(1, round(hours * per_hour)), left)


def _trace_base(trace_name: str, spec_file: str) -> str | None:
    """Where a relative ``--trace`` path is looked up: the working directory, as on any
    command line, when it is there; else beside the spec (as a spec's own trace is)."""
    if not trace_name.strip():
        _fail("--trace '': expected a bundled trace name, a trace folder or an archive")
    head = trace_name.partition("#")[0]
    if any(Path(p).expanduser().exists() for p in (trace_name, head) if p):
        return None
    return str(Path(spec_file).parent)


class _PolicyOption(click.Option):
    """``--policy``: its help also names the registered policies, looked up when the help
    is shown (the registry imports every policy)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.base_help = self.help

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        from policies import registry

        self.help = f"{self.base_help} One of: {', '.join(registry.names())}."
        return super().get_help_record(ctx)


PLOT_TYPES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")  # what matplotlib writes by name

SIM_EXAMPLES = """
\b
Examples:
  skyctl sim svc.yaml --trace aws-v100-2023-02 --replicas 4
  skyctl sim svc.yaml --trace aws-v100-2023-02 --policy spothedge --policy ondemand_only
  skyctl sim svc.yaml --trace aws-v100-2023-02 --policy spothedge --plot sim.png
  skyctl sim svc.yaml --trace ./my-trace --hours 24 --cold-start lognormal:120:0.5 -o json
"""


@click.command("sim", epilog=SIM_EXAMPLES)
@click.argument("spec_file", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option(
    "--trace",
    "trace_name",
    required=True,
    metavar="DIR",
    help="A trace folder or archive (AWS availability/*.csv, GCP zones/*.json or count "
    "*.json; see docs/simulator.md 'Trace formats'), or a bundled trace name.",
)
@click.option(
    "--policy",
    "policies",
    cls=_PolicyOption,
    multiple=True,
    metavar="NAME",
    help="Policy to replay (repeatable, each replayed once; default: the spec's).",
)
@click.option(
    "--replicas",
    type=click.IntRange(min=1, max=MAX_REPLICAS),
    default=None,
    help=f"N: fixed replica count, 1 to {MAX_REPLICAS:,} (default: the spec's min_replicas).",
)
@click.option(
    "--cold-start",
    default=None,
    metavar="SECONDS|DIST",
    help="Launch to READY (spot and on-demand): seconds, or uniform:LOW:HIGH, "
    "normal:MEAN:SD, lognormal:MEDIAN:SIGMA, choice:A,B,... sampled per launch "
    f"(default: the spec's initial_delay_seconds, at most {DEFAULT_COLD_START:g}).",
)
@click.option(
    "--spot-cold-start",
    default=None,
    metavar="SECONDS|DIST",
    help="Spot cold start (default: --cold-start).",
)
@click.option(
    "--ondemand-cold-start",
    default=None,
    metavar="SECONDS|DIST",
    help="On-demand cold start (default: --cold-start).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed for cold-start distributions.",
)
@click.option(
    "--ondemand-price",
    type=_Finite(0, low_open=True, high=MAX_PRICE),
    default=None,
    metavar="USD_PER_HOUR",
    help="On-demand price for a trace that does not carry one.",
)
@click.option(
    "--notice",
    type=_Finite(0),
    metavar="SECONDS",
    default=0.0,
    show_default=True,
    help="Seconds of interruption notice before each trace preemption.",
)
@click.option(
    "--start",
    type=_Finite(0),
    metavar="HOURS",
    default=None,
    help="Hours from the trace start where the replay begins.",
)
@click.option(
    "--hours",
    type=_Finite(0, low_open=True),
    metavar="HOURS",
    default=None,
    help="Hours to replay, within the trace (default: to its end).",
)
@click.option(
    "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE.png",
    help="Draw ready replicas, availability and cost over time (needs matplotlib).",
)
@click.option(
    "--html",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE.html",
    help="Write the report as one standalone web page (table and charts; skyctl console's look).",
)
def sim(
    spec_file: str,
    trace_name: str,
    policies: tuple[str, ...],
    replicas: int | None,
    cold_start: str | None,
    spot_cold_start: str | None,
    ondemand_cold_start: str | None,
    seed: int,
    ondemand_price: float | None,
    notice: float,
    start: float | None,
    hours: float | None,
    output: str,
    plot: str | None,
    html: str | None,
) -> None:
    """Replay a spot trace through placement policies and report availability and cost."""
    from policies import registry
    from skyctl.sim import SimConfig, format_table, simulate, to_json
    from skyctl.sim.coldstart import parse_cold_start
    from skyctl.sim.engine import cold_start_warning
    from skyctl.spec_yaml import load_spec_file
    from skyctl.traces import load_trace

    for flag, out in (("--plot", plot), ("--html", html)):
        if out is not None and not Path(out).parent.is_dir():
            _fail(f"{flag} {out}: no folder {Path(out).parent}; the file's folder must exist")
    if plot is not None and Path(plot).suffix.lower() not in PLOT_TYPES:
        _fail(f"--plot {plot}: the file type comes from its name; allowed: {', '.join(PLOT_TYPES)}")
    if plot is not None:
        try:  # before the replay, which can take seconds, not after it
            from skyctl.sim.plot import plot_results
        except ImportError:
            _fail("--plot needs matplotlib: pip install 'skyctl[plot]'")
            return
    try:
        for wanted in policies:
            registry.get(wanted)
        both = parse_cold_start(cold_start) if cold_start is not None else None
        spot_cold: ColdStart | None = (
            both
            if spot_cold_start is None
            else parse_cold_start(spot_cold_start, key="--spot-cold-start")
        )
        od_cold: ColdStart | None = (
            both
            if ondemand_cold_start is None
            else parse_cold_start(ondemand_cold_start, key="--ondemand-cold-start")
        )
        spec = load_spec_file(spec_file)
        trace = load_trace(
            trace_name, base_dir=_trace_base(trace_name, spec_file), ondemand_price=ondemand_price
        )
    except SkyctlError as e:
        _fail(str(e))
        return
    start_tick, ticks = _window(trace, start, hours)
    for note in trace.notes:
        click.echo(f"warning: trace {trace.name!r}: {note}", err=True)
    for cold in {c for c in (spot_cold, od_cold) if c is not None}:
        warning = cold_start_warning(spec, cold)
        if warning:
            click.echo(f"warning: {warning}", err=True)
    results: list[SimResult] = []
    # a policy named twice is replayed once (in the order first named)
    chosen: tuple[str | None, ...] = tuple(dict.fromkeys(policies)) or (None,)
    progress = _progress(len(chosen))
    for name in progress.iterate(chosen):
        config = SimConfig(
            replicas=replicas,
            policy=name,
            spot_cold_start=spot_cold,
            ondemand_cold_start=od_cold,
            seed=seed,
            notice_seconds=notice,
            start_tick=start_tick,
            ticks=ticks,
            timeline=plot is not None or html is not None,
        )
        try:
            results.append(simulate(spec, trace, config))
        except SkyctlError as e:
            progress.stop()
            _fail(str(e))
    for result in results:
        if result.measured_hours <= 0:
            click.echo(
                f"warning: {result.policy}: the window ({result.hours * 3600:g} s) ends before "
                "the first cold start does: no availability was measured (reported as 0)",
                err=True,
            )
        if result.failure:
            click.echo(f"warning: {result.policy}: service FAILED {result.failure}", err=True)
    if output == "json":
        click.echo(to_json(results))
    else:
        click.echo(format_table(results))
    if html is not None:
        from skyctl.console.simpage import render

        try:
            Path(html).write_text(render(results))
        except OSError as e:
            _fail(f"--html {html}: cannot be written ({e.strerror or e})")
        click.echo(f"report written to {html}", err=True)
    if plot is not None:
        window = trace.window(start_tick, ticks if ticks is not None else trace.ticks - start_tick)
        try:
            plot_results(results, window, plot)
        except OSError as e:
            _fail(f"--plot {plot}: cannot be written ({e.strerror or e})")
        click.echo(f"plot written to {plot}", err=True)
