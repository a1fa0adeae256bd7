"""Cold starts as distributions: how long a launch takes to become READY.

A :class:`ColdStart` is parsed from the text ``skyctl sim --cold-start`` takes:

- ``120``: always 120 s (the default model: one fixed figure);
- ``uniform:LOW:HIGH``: uniform between LOW and HIGH seconds;
- ``normal:MEAN:SD``: normal, clipped at 0;
- ``lognormal:MEDIAN:SIGMA``: log-normal with that median and log-scale
  sigma (a long right tail: image pulls and model loads that sometimes stall);
- ``choice:A,B,C``: one of the listed figures, equally likely.

Samples come from a ``random.Random`` the engine seeds (``SimConfig.seed``),
so a replay is reproducible.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from skyctl.errors import ConfigError

__all__ = ["ColdStart", "as_cold_start", "parse_cold_start"]

MAX_SECONDS = 1e7  # ~116 days: any figure beyond is a typo, and exp() would overflow
MAX_SIGMA = 5.0  # lognormal: the mean is MEDIAN x e^12.5 at most
_FORMS = "SECONDS, uniform:LOW:HIGH, normal:MEAN:SD, lognormal:MEDIAN:SIGMA or choice:A,B,..."


@dataclass(frozen=True)
class ColdStart:
    kind: str  # "fixed", "uniform", "normal", "lognormal", "choice"
    params: tuple[float, ...]

    def sample(self, rng: random.Random) -> float:
        k, p = self.kind, self.params
        if k == "fixed":
            return p[0]
        if k == "uniform":
            return rng.uniform(p[0], p[1])
        if k == "normal":
            return max(0.0, rng.gauss(p[0], p[1]))
        if k == "lognormal":
            return p[0] * math.exp(rng.gauss(0.0, p[1]))
        return rng.choice(p)

    @property
    def mean(self) -> float:
        k, p = self.kind, self.params
        if k == "fixed":
            return p[0]
        if k == "uniform":
            return (p[0] + p[1]) / 2
        if k == "normal":
            return p[0]  # the clipping at 0 is ignored here
        if k == "lognormal":
            return p[0] * math.exp(p[1] ** 2 / 2)
        return sum(p) / len(p)

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"{self.params[0]:g}"
        sep = "," if self.kind == "choice" else ":"
        return f"{self.kind}:" + sep.join(f"{v:g}" for v in self.params)


def parse_cold_start(text: str, *, key: str = "--cold-start") -> ColdStart:
    """``text`` as a :class:`ColdStart`; ConfigError naming ``key`` and the forms allowed."""
    head, _, rest = text.strip().partition(":")
    try:
        if not rest:
            values: tuple[float, ...] = (float(head),)
            kind, want = "fixed", 1
        else:
            kind = head.lower()
            sep = "," if kind == "choice" else ":"
            values = tuple(float(v) for v in rest.split(sep))
            want = {"uniform": 2, "normal": 2, "lognormal": 2, "choice": len(values)}[kind]
    except (ValueError, KeyError):
        raise ConfigError(f"{key} {text!r}: expected {_FORMS}") from None
    if len(values) != want or not values or any(not math.isfinite(v) or v < 0 for v in values):
        raise ConfigError(f"{key} {text!r}: expected {_FORMS}, with figures >= 0")
    if any(v > MAX_SECONDS for v in values):
        raise ConfigError(f"{key} {text!r}: figures are at most {MAX_SECONDS:.0e} seconds")
    if kind == "lognormal" and values[1] > MAX_SIGMA:
        raise ConfigError(f"{key} {text!r}: SIGMA is at most {MAX_SIGMA:g}")
    if kind == "uniform" and values[0] > values[1]:
        raise ConfigError(f"{key} {text!r}: LOW must not exceed HIGH")
    return ColdStart(kind, values)


def as_cold_start(value: float | str | ColdStart) -> ColdStart:
    """A figure in seconds, a distribution text, or a ColdStart, as a ColdStart."""
    if isinstance(value, ColdStart):
        return value
    if isinstance(value, str):
        return parse_cold_start(value)
    if not 0 <= value <= MAX_SECONDS:
        raise ConfigError(f"cold start {value!r}: must be 0 to {MAX_SECONDS:.0e} seconds")
    return ColdStart("fixed", (float(value),))
