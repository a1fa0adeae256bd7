"""One router's hedging state: the token budget and the hedge delay.

Every request earns ``service.router.hedge_budget`` of a token and every hedge
spends one (the rules are :func:`policies.routing.earn_hedge_tokens` and
:func:`~policies.routing.spend_hedge_token`), so hedges stay within that share of
the requests. The delay is ``hedge_delay_seconds`` when the spec fixes it, else the
P95 of the recent times to headers, recomputed every 16 new samples rather than on
every request.
"""

from __future__ import annotations

from policies import routing
from skyctl.router.stats import Reservoir


class Hedging:
    """Tokens earned per request, spent per hedge; the P95 delay, cached."""

    __slots__ = ("_p95", "_p95_total", "latency", "sent", "tokens")

    def __init__(self, latency: Reservoir) -> None:
        self.latency = latency  # time to headers over all replicas
        self.tokens = 0.0
        self.sent = 0  # hedges sent
        self._p95: float | None = None
        self._p95_total = -1

    def earn(self, budget: float) -> None:
        self.tokens = routing.earn_hedge_tokens(self.tokens, budget)

    def delay(self, fixed: float | None) -> float | None:
        if fixed is not None:
            return routing.hedge_delay(fixed, ())
        latency = self.latency
        if self._p95 is None or latency.total - self._p95_total >= 16:
            self._p95 = routing.hedge_delay(None, latency.values())
            self._p95_total = latency.total
        return self._p95

    def try_hedge(self) -> bool:
        """Spend a token for a hedge, when one is left."""
        allowed, self.tokens = routing.spend_hedge_token(self.tokens)
        if allowed:
            self.sent += 1
        return allowed
