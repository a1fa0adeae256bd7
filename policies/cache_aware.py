"""Cache-aware routing: send a request where its prompt's prefix is likely cached.

LLM servers (vLLM, SGLang, TGI) keep the KV cache of recent prompts; a request
whose prefix (a system prompt, a chat's earlier turns) is cached on a replica
skips most of its prefill. This module is the pure part of the router's
``cache_aware`` policy (``service.load_balancing_policy``):

- :mod:`policies.cache_keys` (re-exported here) reads a request's prompt and
  names it: block keys (each a hash of the whole prefix up to a block's end,
  as vLLM names its KV blocks) and, for a chat, turn keys (:class:`Prefix`).
- :class:`PrefixIndex` remembers which replica was sent which blocks: an
  approximate radix tree of every replica's cache, bounded in size (oldest
  blocks evicted first) and in age (blocks older than ``ttl`` are forgotten).
  A replica sent an earlier turn's prompt holds a chat through that turn's
  answer (the server cached what it generated; the router never saw it).
  A copy that failed is taken back (:meth:`Homes.failed`).
- :func:`rank` orders the replicas: the one holding the longest prefix first,
  unless its load is over the bound (``balance_factor`` times the mean, as in
  consistent hashing with bounded loads, and at least half a request over it), in
  which case the least loaded under the bound wins and, once recorded, becomes
  the prefix's new home. A replica holding a usable match (any holder, not
  only the deepest) may go up to :data:`HOLDER_ROOM` requests over that bound
  while its load averaged over the last :data:`DEFAULT_AVERAGE_SECONDS`
  (:class:`LoadAverage`), plus the bound's slack, is within ``balance_factor``
  times the mean average: the balance the bound protects is sustained, while
  with a few requests in flight per replica the counts swing by a request or
  two from one arrival to the next, and each such swing would make a request
  prefill its whole prefix (a system prompt, a template) on a replica that
  never held it.
  A replica whose KV cache its server reports nearly full (:data:`KV_FULL`,
  vLLM's ``gpu_cache_usage_perc``) counts as over the bound too, unless all are:
  a new request there would wait for blocks or preempt a running one.
  Among replicas holding the same depth (every one, for a new prefix), the
  one with the least prefill still pending goes first (:class:`Pending`),
  then the least loaded: a server prefills in chunks that every running
  request's next step waits for, so a new request's first token comes later
  behind a long prefill, whatever the in-flight counts.
  A hedge or fan-out copy goes to the next replica in the same order.
- :class:`Pending` counts, per replica, the prompt blocks the router sent
  there that the replica had not cached (by the index) and has not yet
  answered with a first byte: the prefill work queued ahead of a new request.
- :func:`outcome` names what the ranking did for a request, for the counters.
- :class:`Homes` holds the index, the pending prefill, the load averages and
  each replica's capacity (:class:`Capacity`, learned from what it publishes)
  and runs the steps per request: the router's, and the benchmark's.

A replica that leaves takes only its blocks (spread over later records): every
other prefix keeps its home; one that joins takes new prefixes as the least
loaded. The router passes ``now`` in; nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Final

from policies.cache_capacity import Capacity
from policies.cache_keys import (
    BLOCK_BYTES,
    CHAT_SUFFIX,
    COMPLETION_SUFFIX,
    MAX_BLOCKS,
    NONE,
    Prefix,
    block_keys,
    parse_json_path,
    prefix,
    prompt_bytes,
    session_keys,
    turn_key,
)
from policies.cache_pending import Pending, Ticket

__all__ = [
    "BLOCK_BYTES",
    "CHAT_SUFFIX",
    "COMPLETION_SUFFIX",
    "MAX_BLOCKS",
    "NONE",
    "Capacity",
    "Pending",
    "Prefix",
    "Ticket",
    "block_keys",
    "parse_json_path",
    "prefix",
    "prompt_bytes",
    "session_keys",
    "turn_key",
]

MIN_MATCH: Final = 2  # blocks (128 bytes, ~32 tokens): a shorter match counts as none
DEFAULT_BALANCE: Final = 1.25  # a replica over 1.25x the mean load loses new work
# ... and over the mean plus half a request (rounded up): at low loads 1.25x the mean
# alone moves every other request of a popular prefix, while a whole request of slack
# let a few-shot template's home run 1.25x the mean on average (benchmarks/llm_routing,
# tuned on its seeds 1 and 2 among 0, 0.5 and 1 with factors 1.15 to 1.5)
DEFAULT_SLACK: Final = 0.5
# the window of the load averages that let a prefix's holders go over the bound
# (benchmarks/llm_routing, chosen on its tuning seeds 1 and 2 between 10 and 30 s)
DEFAULT_AVERAGE_SECONDS: Final = 10.0
# requests over the bound a holder of the prefix may carry while its averaged load is fair
# (a cap against bursts; tuning seeds 1 and 2 at 70%: 1, 2 and 3 tried; docs/router.md)
HOLDER_ROOM: Final = 2.0
# (block, replica) pairs remembered: 62 MB at most (benchmarks/llm_routing/index_memory.py)
DEFAULT_MAX_ENTRIES: Final = 200_000
DEFAULT_TTL: Final = 600.0  # seconds a block is remembered without being used
# vLLM's kv_cache_usage_perc at or over this: a new request waits for blocks or preempts one
KV_FULL: Final = 0.9
# pairs of replicas that left taken off the index per record (PrefixIndex.forget): ~0.1 ms
SWEEP: Final = 256


Holders = int | tuple[int, ...]  # a block's holders: one replica id, or several


def _each(holders: Holders) -> tuple[int, ...]:
    return (holders,) if isinstance(holders, int) else holders


def _without(holders: Holders, replica: int) -> Holders | None:
    """``holders`` less ``replica`` (None: no one left)."""
    if isinstance(holders, int):
        return None if holders == replica else holders
    rest = tuple(r for r in holders if r != replica)
    return rest[0] if len(rest) == 1 else (rest or None)


class PrefixIndex:
    """Which replicas were last sent which prefix blocks (bounded; see the module docstring).

    ``max_entries`` bounds the (block, replica) pairs kept; past it, the blocks
    used least recently go first. Blocks unused for ``ttl`` seconds are dropped
    (and a replica's hold on a block expires after ``ttl`` too).
    ``replica_blocks`` (None: no bound): blocks one replica's cache holds; past
    it the replica forgets those it was sent least recently, as its server
    evicts them (else the index names holders that evicted a prefix long ago).
    Without it, :attr:`bounds` (replica -> blocks, learned from what each
    replica publishes: :class:`Capacity`) bounds the replicas it names; with
    ``ordered`` every replica's blocks are kept in order of use from the start,
    ready for a bound learned later.

    Two maps hold the pairs: the blocks in order of last use, each with its
    holders, and per replica the blocks it holds, each with when it was last
    sent. A step costs in proportion to what it touches: a record to its keys,
    an eviction to the block's holders, the oldest block found in O(1) (an
    ``OrderedDict``: a plain dict finds its first key by skipping the slots
    its deletions left, 4 ms a request once the index was full). A replica
    that leaves (:meth:`forget`) stops counting at once, in O(1); its pairs
    go from the blocks :data:`SWEEP` at a time with each later record (a
    walk of every block took 138 ms at 200,000 pairs, on the router's event
    loop, stalling every request).
    """

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        ttl: float = DEFAULT_TTL,
        replica_blocks: int | None = None,
        ordered: bool = False,
    ) -> None:
        self.max_entries = max(1, max_entries)
        self.ttl = ttl
        self.replica_blocks = None if replica_blocks is None else max(1, replica_blocks)
        self.bounds: dict[int, int] = {}  # per replica, when replica_blocks is None
        self.ordered = ordered
        self._blocks: OrderedDict[int, Holders] = OrderedDict()  # oldest use first
        self._held: dict[int, dict[int, float]] = {}  # replica -> block -> when last sent
        # replicas that left, and their blocks still to take their id off
        self._leaving: list[tuple[int, Iterator[int]]] = []
        self._entries = 0
        self.evicted = 0  # (block, replica) pairs dropped for size or age, ever

    def __len__(self) -> int:
        """(block, replica) pairs held."""
        return self._entries

    def blocks(self) -> int:
        return len(self._blocks)

    def held(self, replica: int) -> int:
        """(block, replica) pairs ``replica`` holds."""
        return len(self._held.get(replica, ()))

    def depths(
        self, keys: Sequence[int], now: float, answers: Sequence[tuple[int, int]] = ()
    ) -> dict[int, int]:
        """Replica id -> how many leading blocks of ``keys`` it holds (those holding any).

        A replica's blocks of one prompt are prefix-closed (:meth:`record` makes the
        earlier blocks the more recent, so eviction and expiry take the tail
        first), so each holder's depth is found by bisection: O(holders x log n).
        ``answers`` (:attr:`Prefix.answers`): a holder of an earlier turn's prompt
        key holds at least that turn's blocks through its answer.
        """
        if not keys:
            return {}
        oldest = now - self.ttl
        blocks, held = self._blocks, self._held
        depth: dict[int, int] = {}
        for key, through in answers:
            turn = blocks.get(key)
            if turn is None:
                continue
            for replica in _each(turn):
                when = held.get(replica, {}).get(key)  # (none: it left)
                if when is not None and when >= oldest and depth.get(replica, 0) < through:
                    depth[replica] = through
        first = keys[0]
        holders = blocks.get(first)
        if holders is None:
            return depth
        for replica in _each(holders):
            mine = held.get(replica)
            if mine is None:
                continue  # it left
            when = mine.get(first)
            if when is None or when < oldest:
                continue
            lo, hi = 1, len(keys)  # it holds keys[:lo]; not beyond keys[:hi]
            while lo < hi:
                mid = (lo + hi + 1) // 2
                when = mine.get(keys[mid - 1])
                if when is not None and when >= oldest:
                    lo = mid
                else:
                    hi = mid - 1
            depth[replica] = max(lo, depth.get(replica, 0))
        return depth

    def record(
        self, keys: Sequence[int], replica: int, now: float, end: int | None = None
    ) -> list[int]:
        """``replica`` was sent the prompt of ``keys``: it holds those blocks now
        (and with ``end``, :attr:`Prefix.end`, the whole prompt: its answer next).
        Returns the keys it did not hold before (for :meth:`undo`).

        The blocks are touched last to first (``end`` before them all), so a
        prompt's first blocks are always the more recently used: the tail of a
        prefix is evicted first.
        """
        if self._leaving:
            self._sweep(SWEEP)
        blocks = self._blocks
        limit = self.replica_blocks if self.replica_blocks is not None else self.bounds.get(replica)
        bounded = self.ordered or limit is not None
        mine = self._held.get(replica)
        if mine is None or (bounded and type(mine) is dict):  # (bounded since: once)
            # bounded: in order of use too, the replica's least recently sent first
            mine = self._held[replica] = _by_use(mine) if bounded else {}
        fresh: list[int] = []
        for key in reversed(keys) if end is None else (end, *reversed(keys)):
            if key in mine:
                blocks.move_to_end(key)
                if bounded:
                    mine.move_to_end(key)  # type: ignore[attr-defined]
            else:
                holders = blocks.pop(key, None)
                if holders is None:
                    blocks[key] = replica
                elif isinstance(holders, int):  # (itself: back under its id, not swept yet)
                    blocks[key] = holders if holders == replica else (holders, replica)
                else:
                    blocks[key] = holders if replica in holders else (*holders, replica)
                fresh.append(key)
            mine[key] = now
        self._entries += len(fresh)
        if limit is not None and len(mine) > limit:
            self._trim(mine, replica, limit)
        self._evict(now)
        return fresh

    def _trim(self, mine: dict[int, float], replica: int, keep: int) -> None:
        """``replica`` forgets its least recently sent blocks past ``keep``."""
        assert isinstance(mine, OrderedDict)
        while len(mine) > keep:
            key = mine.popitem(last=False)[0]
            self._entries, self.evicted = self._entries - 1, self.evicted + 1
            holders = self._blocks.get(key)
            rest = None if holders is None else _without(holders, replica)
            if rest is not None:
                self._blocks[key] = rest
            elif holders is not None:
                del self._blocks[key]

    def undo(self, fresh: Sequence[int], replica: int, when: float) -> None:
        """Take back a :meth:`record` at ``when`` whose request failed: ``replica`` no
        longer holds ``fresh`` (the keys that record added), unless sent them again since."""
        mine = self._held.get(replica)
        if mine is None:
            return
        blocks = self._blocks
        for key in fresh:
            if mine.get(key) != when:
                continue  # gone, or sent again since: held by that later request
            del mine[key]
            self._entries -= 1
            rest = _without(blocks[key], replica)
            if rest is None:
                del blocks[key]
            else:
                blocks[key] = rest  # (an existing key: its place in the order stays)

    def forget(self, replica: int) -> None:
        """``replica`` left: it holds nothing from now on, other replicas' blocks stay.

        O(1) here; its pairs leave the blocks over the next records (:meth:`_sweep`).
        """
        self.bounds.pop(replica, None)
        mine = self._held.pop(replica, None)
        if mine:
            self._entries -= len(mine)
            self._leaving.append((replica, iter(mine)))

    def _sweep(self, budget: int) -> None:
        """Take up to ``budget`` of the pairs of replicas that left off their blocks."""
        blocks, held, leaving = self._blocks, self._held, self._leaving
        while leaving and budget > 0:
            replica, keys = leaving[0]
            back = held.get(replica)  # itself, back under its id: what it holds anew stays
            for key in keys:
                budget -= 1
                holders = blocks.get(key)
                if holders is not None and (back is None or key not in back):
                    rest = _without(holders, replica)
                    if rest is None:
                        del blocks[key]
                    else:
                        blocks[key] = rest
                if budget <= 0:
                    break
            else:
                leaving.pop(0)

    def _evict(self, now: float) -> None:
        blocks, held = self._blocks, self._held
        oldest = now - self.ttl
        while blocks:
            key = next(iter(blocks))
            group = _each(blocks[key])
            if self._entries <= self.max_entries:
                times = [held.get(r, {}).get(key) for r in group]
                if any(when is not None and when >= oldest for when in times):
                    break
            del blocks[key]
            for replica in group:
                mine = held.get(replica)
                if mine is not None and mine.pop(key, None) is not None:
                    self._entries -= 1
                    self.evicted += 1
                    if not mine:
                        del held[replica]


def _by_use(mine: dict[int, float] | None) -> OrderedDict[int, float]:
    """A replica's blocks least recently sent first (a plain dict: first sent first)."""
    return OrderedDict(sorted(mine.items(), key=lambda item: item[1]) if mine else ())


def replica_blocks(cache_bytes: int | None) -> int | None:
    """A replica's cache of ``cache_bytes`` of prompt text in blocks (None: unbounded)."""
    return None if cache_bytes is None else max(1, cache_bytes // BLOCK_BYTES)


def bound(loads: Sequence[float], factor: float, slack: float = DEFAULT_SLACK) -> float:
    """Most load a replica may carry and still take a new request: ``factor`` x the
    mean load counting that request (consistent hashing with bounded loads), and
    at least ``slack`` over that mean."""
    if not loads:
        return 0.0
    mean = (sum(loads) + 1.0) / len(loads)
    limit = max(factor * mean, mean + slack)
    if not math.isfinite(limit):  # a published load too large for a float: no bound
        return math.inf
    return max(1.0, float(math.ceil(limit - 1e-9)))


def rank(
    depths: Sequence[int],
    loads: Sequence[float],
    total_blocks: int,
    factor: float = DEFAULT_BALANCE,
    cursor: int = 0,
    min_match: int = MIN_MATCH,
    slack: float = DEFAULT_SLACK,
    full: Sequence[bool] | None = None,
    pending: Sequence[float] | None = None,
    averages: Sequence[float] | None = None,
    room: float = HOLDER_ROOM,
) -> list[int]:
    """Every replica index, best first, for a prompt of ``total_blocks`` blocks.

    ``depths[i]``: leading blocks replica ``i`` holds; ``loads[i]``: its load.
    Replicas whose load plus this request stays within :func:`bound` come
    first: the deepest match (one under ``min_match`` blocks counts as none,
    unless it is the whole prompt), then the least loaded, ties rotating from ``cursor``. Replicas
    over the bound follow, least loaded first: they are the retries and hedge
    targets of last resort. ``full[i]``: replica ``i`` reports its KV cache
    full (:data:`KV_FULL`); it counts as over the bound unless every replica does.
    ``pending[i]``: prompt blocks sent to replica ``i`` still to prefill
    (:class:`Pending`); among equal matches the least pending goes first,
    before the least loaded. ``averages[i]``: replica ``i``'s load averaged over
    time (:class:`LoadAverage`); a replica holding a usable match whose average
    plus ``slack`` is within ``factor`` times the mean average (counting the
    request) may carry up to ``room`` requests over the bound.
    """
    count = len(loads)
    limit = bound(loads, factor, slack)
    least = max(1, min(min_match, total_blocks))
    flags = full if full is not None and any(full) and not all(full) else None

    queued = pending if pending is not None else [0.0] * count
    sustained = factor * (sum(averages) + 1.0) / count if averages is not None and count else None

    def cap(index: int) -> float:
        if sustained is None or depths[index] < least:
            return limit
        return limit + room if averages[index] + slack <= sustained else limit  # type: ignore[index]

    def key(index: int) -> tuple[int, int, float, float, int]:
        depth = depths[index]
        over = 1 if loads[index] + 1.0 > cap(index) or (flags is not None and flags[index]) else 0
        matched = depth if depth >= least and not over else 0
        return (over, -matched, queued[index], loads[index], (index - cursor) % count)

    return sorted(range(count), key=key)


class LoadAverage:
    """Each replica's load averaged over about the last ``window`` seconds.

    :meth:`observe` folds in the loads seen at a routing decision, as an
    exponential average over time: requests arriving at random see the time
    average (Poisson arrivals see time averages), so sampling at decisions
    needs no hook when a request ends. A replica seen first starts at its load.
    """

    def __init__(self, window: float = DEFAULT_AVERAGE_SECONDS) -> None:
        self.window = window
        self._mean: dict[int, float] = {}
        self._at: dict[int, float] = {}

    def observe(self, loads: Mapping[int, float], now: float) -> list[float]:
        """Fold in ``loads`` (replica id -> load) seen at ``now``; the averages, in that order."""
        out: list[float] = []
        for replica, load in loads.items():
            mean = self._mean.get(replica)
            if mean is None:
                mean = load
            else:
                elapsed = max(0.0, now - self._at[replica])
                weight = 1.0 - math.exp(-elapsed / self.window) if self.window > 0 else 1.0
                mean += (load - mean) * weight
            self._mean[replica] = mean
            self._at[replica] = now
            out.append(mean)
        return out

    def forget(self, replica: int) -> None:
        self._mean.pop(replica, None)
        self._at.pop(replica, None)


HIT: Final = "hit"  # sent to a replica holding (at least MIN_MATCH blocks of) its prefix
MISS: Final = "miss"  # no replica held it: the least loaded became its home
OVERFLOW: Final = "overflow"  # its holders were over the bound: the least loaded took it
UNKEYED: Final = "unkeyed"  # no prefix to read: by load alone


def outcome(
    depths: Sequence[int], first: int, total_blocks: int, min_match: int = MIN_MATCH
) -> str:
    """What :func:`rank` did for a request whose best replica is ``first``."""
    if total_blocks == 0:
        return UNKEYED
    least = max(1, min(min_match, total_blocks))
    if depths[first] >= least:
        return HIT
    return OVERFLOW if any(depth >= least for depth in depths) else MISS


def uncached(depth: int, total_blocks: int, min_match: int = MIN_MATCH) -> int:
    """Blocks of a prompt of ``total_blocks`` a replica holding ``depth`` of them must
    prefill (a match under ``min_match`` blocks counts as none, as in :func:`rank`)."""
    least = max(1, min(min_match, total_blocks))
    return total_blocks - depth if depth >= least else total_blocks


class Homes:
    """One service's cache_aware state and its steps per request (the router's, in
    :mod:`skyctl.router.affinity`, and the benchmark's run this same code).

    :meth:`order` ranks the replicas for a request (:func:`rank` on the index's
    depths, each replica's pending prefill and its load averaged over time,
    sampled here at each decision); :meth:`sent` records a copy sent (the
    replica holds the prefix now, and what it was not expected to hold is
    pending prefill there until :meth:`answered`); :meth:`observe` takes what a
    replica publishes of its cache (with ``learn`` and no ``replica_blocks``,
    its bound in the index: :class:`Capacity`); :meth:`forget` drops a replica
    that left.
    """

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        ttl: float = DEFAULT_TTL,
        window: float = DEFAULT_AVERAGE_SECONDS,
        replica_blocks: int | None = None,
        learn: bool = True,
    ) -> None:
        self.index = PrefixIndex(max_entries, ttl, replica_blocks, ordered=learn)
        self.capacity = Capacity()
        self.pending = Pending()
        self.averages = LoadAverage(window)
        self.cursor = 0  # ties rotate

    def order(
        self,
        prompt: Prefix,
        replicas: Sequence[int],
        loads: Sequence[float],
        now: float,
        factor: float = DEFAULT_BALANCE,
        slack: float = DEFAULT_SLACK,
        full: Sequence[bool] | None = None,
    ) -> tuple[list[int], list[int]]:
        """Indices into ``replicas`` (ids; ``loads`` theirs) best first, and each one's
        depth in ``prompt``'s blocks (``full``: see :func:`rank`)."""
        keys = prompt.keys
        if keys:
            held = self.index.depths(keys, now, prompt.answers)
            depths = [held.get(r, 0) for r in replicas]
        else:
            depths = [0] * len(replicas)
        pending = [float(self.pending.of(r)) for r in replicas]
        averages = self.averages.observe(dict(zip(replicas, loads, strict=True)), now)
        ranked = rank(
            depths,
            loads,
            len(keys),
            factor,
            self.cursor,
            slack=slack,
            full=full,
            pending=pending,
            averages=averages,
        )
        self.cursor += 1
        return ranked, depths

    def sent(self, prompt: Prefix, replica: int, depth: int, ticket: Ticket, now: float) -> None:
        """A copy of ``prompt`` went to ``replica``, which held ``depth`` of its blocks:
        it holds them all now (until :meth:`failed`), their prefill pending there."""
        keys = prompt.keys
        if keys:
            fresh = self.index.record(keys, replica, now, prompt.end)
            if fresh:
                ticket.claims.append((replica, fresh, now))
            ticket.sent.append((replica, len(keys) + (prompt.end is not None)))
            self.pending.add(ticket, replica, uncached(depth, len(keys)))

    def failed(self, ticket: Ticket, replica: int | None = None) -> None:
        """The copy of ``ticket``'s request sent to ``replica`` (every copy, without it)
        failed: a connection error, a timeout, an error status, a refusal. The replica
        did not take the prompt: what its record added to the index is taken back
        (:meth:`PrefixIndex.undo`) and its prefill is no longer pending."""
        kept: list[tuple[int, list[int], float]] = []
        for claim in ticket.claims:
            rid, fresh, when = claim
            if replica is None or rid == replica:
                self.index.undo(fresh, rid, when)
            else:
                kept.append(claim)
        ticket.claims = kept
        ticket.sent = [] if replica is None else [s for s in ticket.sent if s[0] != replica]
        self.pending.release(ticket, replica)

    def answered(self, ticket: Ticket) -> None:
        """The request of ``ticket`` got its first response bytes, or ended: its
        prefill is no longer pending, and its copies' entries count (:class:`Capacity`)."""
        self.pending.release(ticket)
        sent, ticket.sent = ticket.sent, []
        for replica, entries in sent:
            self.capacity.count(replica, entries)

    def observe(self, replica: int, cache_tokens: float | None, prompts: float | None) -> None:
        """What ``replica`` publishes (:meth:`Capacity.observe`): its bound, once learned."""
        bound = self.capacity.observe(replica, cache_tokens, prompts)
        if bound is not None and self.index.ordered:
            self.index.bounds[replica] = bound

    def forget(self, replica: int) -> None:
        """``replica`` left: its blocks, pending prefill, average and capacity go."""
        self.capacity.forget(replica)
        self.index.forget(replica)
        self.pending.forget(replica)
        self.averages.forget(replica)
