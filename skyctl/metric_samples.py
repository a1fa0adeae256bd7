"""Prometheus samples as plain data, and their sum over processes.

The router's metrics live in one process each (a router worker, a router pod);
what an operator reads is their sum. This module is the sum, shared by the
router workers (an endpoint's ``/metrics`` over the workers of its port,
:mod:`skyctl.router.worker_metrics`) and the controller (its ``/metrics`` over
every router process's report, :mod:`skyctl.controller.router_metrics`):

- :func:`snapshot`: a registry's families as JSON-ready data
  (``{"name", "type", "help", "samples": [[sample name, {labels}, value], ...]}``);
- :func:`merge`: families of several processes summed sample by sample (same
  sample name and labels). Counters and histograms (their buckets, ``_count``
  and ``_sum`` are counters too) sum; so do gauges that count something
  (requests in flight), except the gauges of :data:`SAME_IN_EVERY_PROCESS`
  (each process sees the same replicas ready: the largest is kept);
- :func:`cumulative`, :func:`keep_replicas`: the counters and histograms only
  (what a process that went away leaves behind), the series of the replicas
  still known;
- :func:`to_metrics`: back to ``prometheus_client`` families for a collector;
- :func:`pack`, :func:`unpack`: the same families in a compact form for files
  and reports: the sample names and ``le`` bounds of a family's first series
  once (``columns``), then per series its labels and its values in that order
  (``rows``): a histogram series is one row of numbers instead of one labelled
  sample per bucket (about 10 times smaller).

Samples keep the order they first came in, so a histogram's buckets stay
together and in order in the exposition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

Family = dict[str, Any]  # {"name", "type", "help", "samples": [[name, {labels}, value]]}

SAME_IN_EVERY_PROCESS = frozenset({"skyctl_router_ready_replicas"})
CUMULATIVE_TYPES = frozenset({"counter", "histogram"})


def snapshot(registry: CollectorRegistry, types: Iterable[str] | None = None) -> list[Family]:
    """The registry's families now (only those of ``types``, when given)."""
    wanted = None if types is None else set(types)
    out: list[Family] = []
    for metric in registry.collect():
        if wanted is not None and metric.type not in wanted:
            continue
        samples = [[s.name, dict(s.labels), float(s.value)] for s in metric.samples]
        out.append(
            {"name": metric.name, "type": metric.type, "help": metric.documentation,
             "samples": samples}
        )  # fmt: skip
    return out


def merge(
    snapshots: Iterable[list[Family]],
    combine: Callable[[float, float], float] | None = None,
) -> list[Family]:
    """The families of ``snapshots`` summed sample by sample (see the module
    docstring); ``combine`` (e.g. ``max``) replaces the sum for every sample."""
    families: dict[str, Family] = {}
    where: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], list[Any]]] = {}
    for families_of_one in snapshots:
        for family in families_of_one:
            name = str(family["name"])
            into = families.get(name)
            if into is None:
                into = families[name] = {**family, "samples": []}
                where[name] = {}
            keyed = where[name]
            how = combine or (max if name in SAME_IN_EVERY_PROCESS else None)
            for sample_name, labels, value in family["samples"]:
                key = (str(sample_name), tuple(sorted(labels.items())))
                sample = keyed.get(key)
                if sample is None:
                    sample = keyed[key] = [sample_name, dict(labels), float(value)]
                    into["samples"].append(sample)
                elif how is None:
                    sample[2] += float(value)
                else:
                    sample[2] = how(sample[2], float(value))
    return list(families.values())


def cumulative(families: Iterable[Family]) -> list[Family]:
    """Only the counters and histograms (figures that never go down)."""
    return [f for f in families if f.get("type") in CUMULATIVE_TYPES]


def replicas_of(families: Iterable[Family]) -> set[str]:
    """The ``replica`` label values the families name."""
    return {
        str(labels["replica"])
        for f in families
        for _, labels, _ in f["samples"]
        if "replica" in labels
    }


def keep_replicas(families: Iterable[Family], replicas: set[str]) -> list[Family]:
    """The families without the samples of replicas not in ``replicas``
    (``none``, the router's own answers, and samples with no replica stay)."""
    kept = replicas | {"none"}
    out = []
    for f in families:
        samples = [s for s in f["samples"] if s[1].get("replica", "none") in kept]
        out.append({**f, "samples": samples})
    return out


def to_metrics(families: Iterable[Family]) -> list[Metric]:
    """``prometheus_client`` families, for a collector's ``collect``."""
    out = []
    for f in families:
        metric = Metric(str(f["name"]), str(f.get("help", "")), str(f["type"]))
        for sample_name, labels, value in f["samples"]:
            metric.add_sample(str(sample_name), dict(labels), float(value))
        out.append(metric)
    return out


def pack(families: Iterable[Family]) -> list[Family]:
    """Families in the compact form (see the module docstring); a series whose
    samples differ from the first series' stays a plain sample list."""
    out: list[Family] = []
    for f in families:
        groups: dict[tuple[tuple[str, str], ...], list[list[Any]]] = {}
        for sample in f["samples"]:
            labels = sample[1]
            key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            groups.setdefault(key, []).append(sample)
        columns: list[list[Any]] | None = None
        rows: list[list[Any]] = []
        plain: list[list[Any]] = []
        for key, samples in groups.items():
            shape = [[s[0], s[1].get("le")] for s in samples]
            if columns is None:
                columns = shape
            if shape == columns:
                rows.append([dict(key), [float(s[2]) for s in samples]])
            else:
                plain.extend(samples)
        packed = {k: v for k, v in f.items() if k != "samples"}
        out.append({**packed, "columns": columns or [], "rows": rows, "samples": plain})
    return out


def unpack(families: Iterable[Family]) -> list[Family]:
    """The families :func:`pack` made, as plain sample lists again."""
    out: list[Family] = []
    for f in families:
        samples: list[list[Any]] = []
        columns = f.get("columns") or []
        for labels, values in f.get("rows") or []:
            if len(values) != len(columns):
                raise ValueError(
                    f"{f.get('name')}: a row of {len(values)} values, not {len(columns)}"
                )
            for (name, le), value in zip(columns, values, strict=True):
                samples.append(
                    [name, {**labels, "le": le} if le is not None else dict(labels), value]
                )
        samples.extend(f.get("samples") or [])
        family = {k: v for k, v in f.items() if k not in ("columns", "rows")}
        out.append({**family, "samples": samples})
    return out
