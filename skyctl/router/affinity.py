"""The router's side of ``load_balancing_policy: cache_aware``: keys, index, order.

:class:`Affinity` holds one service's prefix index (:class:`policies.cache_aware.
PrefixIndex`) and turns a request into an order of replicas, best first:

- a small JSON body (whole, with a ``Content-Length`` within both
  ``router.max_buffer_bytes`` and ``cache_aware.max_body_bytes``) gives block
  keys from its prompt, and a chat its turn keys (:func:`policies.cache_aware.
  prefix`);
- otherwise, or when the body names no prompt, the ``session_header``
  (``X-Session-Id``) gives one key; a request with neither is ranked by load
  alone. Large or chunked bodies are never read here: they stream to the
  least loaded replica as before.

The index, ranking, pending prefill and load averages are
:class:`policies.cache_aware.Homes` (the benchmark drives the same). The replica a
request is sent to is recorded as holding its prefix (its new home when the bound moved
it), and taken back if that copy fails: a retry after a connection error takes back the
try before, an error status (:func:`failed`) every copy
(:meth:`policies.cache_aware.Homes.failed`). Each replica's cache bound in the index
is ``replica_cache_bytes`` when set, else learned from what the replica publishes
(:class:`policies.cache_aware.Capacity`: its ``/metrics`` polled every
``replica_metrics_seconds``, or :data:`CAPACITY_POLL_SECONDS` by default); a replica
that publishes none has no bound. A replica's load is the router's in-flight
count of it, or with ``replica_metrics_seconds`` the larger of that and what the replica
publishes (:mod:`skyctl.router.replica_load`); one whose published KV-cache usage is at
or over :data:`policies.cache_aware.KV_FULL` counts as over the bound; a replica holding
a usable match may go up to two requests over the bound while its load averaged over
time (:class:`policies.cache_aware.LoadAverage`, sampled at each request), plus the
slack, is within the factor of the mean. Among replicas holding as much of the prefix,
the one with the least prefill pending goes first
(:class:`policies.cache_aware.Pending`: the blocks each copy sent there was not expected
to find cached, counted until the request's first response bytes arrive or it ends: the
exchange calls the :class:`Route`'s ``answered``). A raced request
(``cache_aware.race``) goes to the same order: its first copy (``fan_out``: copies) to
the best replicas, a hedge or a retry to the next; every replica a copy is sent to is
recorded as a holder, so the one that answers is one.

Counters (``skyctl_router_cache_aware_*_total``, :mod:`skyctl.router.affinity_metrics`):
requests by :func:`policies.cache_aware.outcome` (hit, miss, overflow, unkeyed)
and the index's evictions.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable, Sequence

from policies import cache_aware, routing
from skyctl.clock import Clock
from skyctl.router.exchange import Exchange
from skyctl.router.front import Request
from skyctl.router.replica_load import ReplicaLoad, Sample
from skyctl.router.stats import ReplicaState
from skyctl.spec import CacheAware, RouterOptions

Pick = Callable[[Sequence[ReplicaState], frozenset[int]], int]
Sent = Callable[[ReplicaState], None]

# how often the replicas' /metrics are read for their caches' size when no
# replica_metrics_seconds is set (one small GET per replica; a cache's size is fixed,
# the token counters only need to pass a cache's worth between reads to be exact)
CAPACITY_POLL_SECONDS = 10.0


def poll_period(options: CacheAware) -> float | None:
    """Seconds between reads of the replicas' metrics (None: none): the load's period
    when set, else :data:`CAPACITY_POLL_SECONDS` to learn their caches, unless
    ``replica_cache_bytes`` says it."""
    if options.replica_metrics_seconds is not None:
        return options.replica_metrics_seconds
    return CAPACITY_POLL_SECONDS if options.replica_cache_bytes is None else None


class Route:
    """One request's way through :class:`Affinity`: ``ranked`` (the replicas best
    first when it is to be raced, else None), ``pick`` (a ``Forward`` pick down
    the same order), ``sent`` (records a raced copy as a holder), and
    ``answered`` (its first response bytes came, or it ended: its prefill is no
    longer pending, and a copy that failed is no holder; idempotent)."""

    __slots__ = ("exchange", "homes", "pick", "ranked", "sent", "ticket")

    def __init__(
        self,
        ranked: list[ReplicaState] | None,
        pick: Pick,
        sent: Sent,
        homes: cache_aware.Homes,
        ticket: cache_aware.Ticket,
    ) -> None:
        self.ranked = ranked
        self.pick = pick
        self.sent = sent
        self.homes = homes
        self.ticket = ticket
        self.exchange: Exchange | None = None

    def bind(self, exchange: Exchange) -> Exchange:
        """``exchange`` (this request's) tells ``answered`` at its first body bytes or end."""
        self.exchange = exchange
        exchange.on_answer = self.answered
        return exchange

    def copy_failed(self, replica: ReplicaState) -> None:
        """A raced copy failed at ``replica`` (a 5xx, a connection error, a timeout)."""
        self.homes.failed(self.ticket, replica.replica_id)

    def answered(self) -> None:
        """The first response bytes came, or the exchange ended: with an error status
        (:func:`failed`) no copy is counted as holding the prompt: one at a time, the
        tries before the last were taken back as they failed; a race answers a 5xx
        only when every copy failed, and a 4xx winner's rivals were cut unanswered."""
        exchange, ticket = self.exchange, self.ticket
        if exchange is not None and failed(exchange.status) and ticket.claims:
            self.homes.failed(ticket)
        self.homes.answered(ticket)


def failed(status: int) -> bool:
    """Whether a response ``status`` says the replica did not take the prompt: an
    error (5xx), a refusal (429, 503: shed) or a request it rejected (4xx).
    0 (the client left before an answer) is not: the replica may have it."""
    return status >= 400


def _header_re(name: str) -> re.Pattern[bytes]:
    return re.compile(
        rb"(?:^|\n)" + re.escape(name.encode("ascii")) + rb":[ \t]*([^\r\n]*?)[ \t]*\r\n",
        re.IGNORECASE,
    )


class Affinity:
    """Prefix keys and replica order for one service (see the module docstring)."""

    def __init__(self, options: CacheAware, clock: Clock) -> None:
        # the index, pending prefill, load averages and the ranking (the benchmark's too)
        self.homes = cache_aware.Homes(
            options.max_prefixes,
            options.ttl_seconds,
            replica_blocks=cache_aware.replica_blocks(options.replica_cache_bytes),
        )
        self.index = self.homes.index
        self.pending = self.homes.pending  # prompt blocks each replica has still to prefill
        self.clock = clock
        self.options = options
        self._header = _header_re(options.session_header)
        self._json_path = (
            cache_aware.parse_json_path(options.json_path) if options.json_path else None
        )
        self.poller: ReplicaLoad | None = None
        self._targets: Callable[[], Sequence[tuple[int, str]]] | None = None
        self._ssl: ssl.SSLContext | None = None
        self.keyed = 0  # requests that had a key
        # requests by what the ranking did for them (policies.cache_aware.outcome)
        self.outcomes = dict.fromkeys(
            (cache_aware.HIT, cache_aware.MISS, cache_aware.OVERFLOW, cache_aware.UNKEYED), 0
        )

    def start_polling(
        self,
        targets: Callable[[], Sequence[tuple[int, str]]],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """Poll the replicas' metrics every :func:`poll_period` (in a running loop);
        ``ssl_context`` verifies https replicas (the router's, for ``replica_ca_file``)."""
        self._targets = targets
        self._ssl = ssl_context
        period = poll_period(self.options)
        if period is not None and self.poller is None:
            # only to learn the caches: the first read is a baseline, needed a period on
            delay = period if self.options.replica_metrics_seconds is None else 0.0
            self.poller = ReplicaLoad(
                period,
                self.clock,
                targets,
                ssl_context=ssl_context,
                on_sample=self.observed,
                delay=delay,
            )
            self.poller.start()

    def observed(self, replica_id: int, sample: Sample) -> None:
        """A replica's metrics came: what it says of its cache goes to the index."""
        self.homes.observe(replica_id, sample.cache_tokens, sample.prompt_tokens)

    async def stop_polling(self) -> None:
        poller, self.poller = self.poller, None
        if poller is not None:
            await poller.stop()

    def close(self) -> None:
        """Stop polling without waiting (the policy changed)."""
        poller, self.poller = self.poller, None
        if poller is not None:
            poller.cancel()

    def reconfigure(self, options: CacheAware) -> None:
        """New options; the index is kept (resized to the new bounds)."""
        if poll_period(options) != poll_period(self.options):
            self.close()
            self.options = options
            if self._targets is not None:
                self.start_polling(self._targets, self._ssl)
        self.index.max_entries = max(1, options.max_prefixes)
        self.index.ttl = options.ttl_seconds
        self.index.replica_blocks = cache_aware.replica_blocks(options.replica_cache_bytes)
        self.options = options
        self._header = _header_re(options.session_header)
        self._json_path = (
            cache_aware.parse_json_path(options.json_path) if options.json_path else None
        )

    def keys(self, request: Request, body: bytes | None) -> cache_aware.Prefix:
        """The request's prefix: from its body, else its session header; no keys for none."""
        if body and len(body) <= self.options.max_body_bytes:
            prompt = cache_aware.prefix(request.path, body, self._json_path)
            if prompt is not None and prompt.keys:
                return prompt
        match = self._header.search(request.head.fields)
        if match is not None and match.group(1):
            return cache_aware.Prefix(cache_aware.session_keys(match.group(1).decode("latin-1")))
        return cache_aware.NONE

    def order(
        self, replicas: Sequence[ReplicaState], prompt: cache_aware.Prefix, now: float
    ) -> tuple[list[int], list[int]]:
        """Indices into ``replicas`` best first (:meth:`policies.cache_aware.Homes.order`),
        and each replica's depth (leading blocks of the prompt it holds); counted by outcome."""
        poller = self.poller
        full: list[bool] | None = None
        if poller is None or self.options.replica_metrics_seconds is None:
            loads = [float(r.in_flight) for r in replicas]
        else:
            loads = [poller.load(r.replica_id, float(r.in_flight)) for r in replicas]
            usage = [poller.kv_usage(r.replica_id) for r in replicas]
            full = [u is not None and u >= cache_aware.KV_FULL for u in usage]
        if prompt.keys:
            self.keyed += 1
        ids = [r.replica_id for r in replicas]
        ranked, depths = self.homes.order(
            prompt, ids, loads, now, self.options.balance_factor, full=full
        )
        if ranked:
            self.outcomes[cache_aware.outcome(depths, ranked[0], len(prompt.keys))] += 1
        return ranked, depths

    def picker(
        self,
        order: Sequence[int],
        prompt: cache_aware.Prefix,
        now: float,
        depths: Sequence[int],
        ticket: cache_aware.Ticket,
    ) -> Pick:
        """A ``Forward`` pick: the best replica in ``order`` not yet tried, recorded
        as a holder of the prompt and its prefill counted as pending on ``ticket``."""

        def pick(replicas: Sequence[ReplicaState], excluded: frozenset[int]) -> int:
            if excluded:  # a retry: the last try failed (a connection error), took nothing
                self.homes.failed(ticket, tried[-1])
            for index in order:
                if index not in excluded:
                    rid = replicas[index].replica_id
                    tried.append(rid)
                    self.homes.sent(prompt, rid, depths[index], ticket, now)
                    return index
            return -1

        tried: list[int] = []
        return pick

    def route(
        self,
        request: Request,
        replicas: Sequence[ReplicaState],
        body: bytes | None,
        opts: RouterOptions,
    ) -> Route:
        """The request's :class:`Route`: its order, pick, race hook and answer hook."""
        now = self.clock.now()
        prompt = self.keys(request, body)
        order, depths = self.order(replicas, prompt, now)
        race = opts.cache_aware.race
        ticket = cache_aware.Ticket()
        pick = self.picker(order, prompt, now, depths, ticket)
        held = {r.replica_id: d for r, d in zip(replicas, depths, strict=True)}
        homes = self.homes

        def sent(replica: ReplicaState) -> None:
            rid = replica.replica_id
            homes.sent(prompt, rid, held.get(rid, 0), ticket, self.clock.now())

        if (
            race is None
            or body is None
            or len(replicas) < 2
            or request.method not in opts.fan_out_methods
        ):
            return Route(None, pick, sent, homes, ticket)
        return Route([replicas[i] for i in order], pick, sent, homes, ticket)

    def forget(self, replica_ids: set[int]) -> None:
        """Replicas that left: their blocks go, every other prefix keeps its home."""
        for replica_id in replica_ids:
            self.homes.forget(replica_id)


def for_policy(
    current: Affinity | None,
    policy: str,
    options: CacheAware,
    clock: Clock,
    targets: Callable[[], Sequence[tuple[int, str]]] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Affinity | None:
    """The router's :class:`Affinity` for ``policy`` (None unless ``cache_aware``):
    ``current`` reconfigured, or a new one (polling ``targets`` at once when given:
    a ``serve update`` turned the policy on in a running router), or ``current`` closed."""
    if policy != routing.CACHE_AWARE:
        if current is not None:
            current.close()
        return None
    if current is not None:
        current.reconfigure(options)
        return current
    fresh = Affinity(options, clock)
    if targets is not None:
        fresh.start_polling(targets, ssl_context)
    return fresh
