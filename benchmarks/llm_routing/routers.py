"""The routing policies compared, each deciding from what a router sees.

A router sees the request (its JSON body) and its own in-flight count per
replica; never the replicas' caches. ``cache_aware`` is the router's own code
(:mod:`skyctl.router.affinity`'s steps on :mod:`policies.cache_aware`); the
peers are written here from their published descriptions:

- ``least_load``: fewest in flight, ties rotating (skyctl's default).
- ``sglang``: SGLang's router ``cache_aware`` policy (sgl-router): an
  approximate radix tree of the text sent to each replica; when the load is
  imbalanced (max - min in flight > 32 and max > 1.0001 x min) the least
  loaded replica; else the longest match if it covers over half the
  request's text (``cache_threshold`` 0.5), else the replica whose tree is
  smallest. The tree is approximated here by the same 64-byte blocks as
  ours, per replica, bounded in size.
- ``chash``: plain consistent hashing (rendezvous) of the prompt's first
  256 bytes over the replicas: perfect affinity, no load bound.

``cache_aware`` learns each replica's cache from what the replica publishes, as
the router does by default (:class:`policies.cache_aware.Capacity`): every
:data:`POLL_SECONDS` the run passes it each replica's ``cache_config_info``
(its KV pool in tokens) and prompt token counter (:meth:`Router.observe`).

Variants, run only when named in ``--policies``: ``cache_aware_blocks`` is
``cache_aware`` keyed by its blocks alone, without the chat turn keys: the
policy before them. ``cache_aware_unbounded`` is ``cache_aware`` whose index
learns no capacity: every replica sent a prefix within ``ttl`` counts as its
holder (the default before the capacity was learned).
``cache_aware_capacity`` is ``cache_aware`` whose index is told each replica's
cache size (``service.router.cache_aware.replica_cache_bytes``, which wins over
what is learned): the simulated server's KV pool in blocks of prompt text,
:func:`replica_blocks`.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Sequence

from benchmarks.llm_routing.engine import BLOCK, Model
from policies import cache_aware as ca

POLICIES = ("least_load", "cache_aware", "sglang", "chash")
# not run by default: cache_aware keyed by its blocks alone, as before the chat turn keys
VARIANTS = ("cache_aware_blocks", "cache_aware_unbounded", "cache_aware_capacity")
# how often the simulated router reads the replicas' published figures: the router's
# default period for cache_aware (skyctl.router.affinity.CAPACITY_POLL_SECONDS)
POLL_SECONDS = 10.0
# bytes of prompt text per token in the workloads: each token id (10 to 65,545) as its
# decimal digits and a space (5.83; measured on the bodies, 5.83 to 5.84)
BYTES_PER_TOKEN = sum(len(str(t)) + 1 for t in range(10, 65_546)) / 65_536


def replica_blocks(model: Model | None = None) -> int:
    """One simulated replica's KV pool (``Model.cache_blocks`` of ``BLOCK`` tokens) in
    the router's blocks of prompt text (``policies.cache_aware.BLOCK_BYTES``): 2,985."""
    model = model or Model()
    return int(model.cache_blocks * BLOCK * BYTES_PER_TOKEN / ca.BLOCK_BYTES)


class Router:
    """A policy over the replica ids in ``alive`` with in-flight counts ``load``."""

    name = ""

    def __init__(self) -> None:
        self.cursor = 0

    def choose(
        self,
        keys: list[int],
        size: int,
        alive: Sequence[int],
        load: dict[int, int],
        now: float,
        ticket: ca.Ticket | None = None,
        prompt: ca.Prefix | None = None,
    ) -> int:
        """The replica id for a request with prefix ``keys`` of ``size`` bytes;
        ``ticket``: the request's, for :meth:`answered`; ``prompt``: its keys with
        its chat turns' (:func:`policies.cache_aware.prefix`)."""
        raise NotImplementedError

    def answered(self, ticket: ca.Ticket) -> None:
        """The request of ``ticket`` got its first token (or ended)."""

    def leave(self, replica: int) -> None:
        """``replica`` is gone."""

    polls = False  # whether the run passes it what the replicas publish (observe)

    def observe(self, replica: int, cache_tokens: float, prompt_tokens: float) -> None:
        """``replica`` publishes a KV cache of ``cache_tokens`` and has processed
        ``prompt_tokens`` of prompts since it started."""

    def _least(self, alive: Sequence[int], load: dict[int, int]) -> int:
        n = len(alive)
        best = min(range(n), key=lambda i: (load[alive[i]], (i - self.cursor) % n))
        self.cursor += 1
        return alive[best]


class LeastLoad(Router):
    name = "least_load"

    def choose(
        self,
        keys: list[int],
        size: int,
        alive: Sequence[int],
        load: dict[int, int],
        now: float,
        ticket: ca.Ticket | None = None,
        prompt: ca.Prefix | None = None,
    ) -> int:
        return self._least(alive, load)


class CacheAware(Router):
    """The router's policy: :class:`policies.cache_aware.Homes`, the code
    :class:`skyctl.router.affinity.Affinity` drives, on the request's prefix."""

    name = "cache_aware"

    def __init__(
        self,
        factor: float = ca.DEFAULT_BALANCE,
        slack: float = ca.DEFAULT_SLACK,
        replica_blocks: int | None = None,
        learn: bool = True,
    ) -> None:
        super().__init__()
        self.homes = ca.Homes(replica_blocks=replica_blocks, learn=learn)
        self.factor = factor
        self.slack = slack
        self.polls = learn and replica_blocks is None

    def choose(
        self,
        keys: list[int],
        size: int,
        alive: Sequence[int],
        load: dict[int, int],
        now: float,
        ticket: ca.Ticket | None = None,
        prompt: ca.Prefix | None = None,
    ) -> int:
        prompt = ca.Prefix(keys) if prompt is None else prompt
        loads = [float(load[r]) for r in alive]
        order, depths = self.homes.order(prompt, alive, loads, now, self.factor, self.slack)
        first = order[0]
        self.homes.sent(prompt, alive[first], depths[first], ticket or ca.Ticket(), now)
        return alive[first]

    def answered(self, ticket: ca.Ticket) -> None:
        self.homes.answered(ticket)

    def leave(self, replica: int) -> None:
        self.homes.forget(replica)

    def observe(self, replica: int, cache_tokens: float, prompt_tokens: float) -> None:
        self.homes.observe(replica, cache_tokens, prompt_tokens)


class CacheAwareBlocks(CacheAware):
    """``cache_aware`` without the chat turn keys (:attr:`policies.cache_aware.Prefix.end`
    and ``answers``): the policy as it was before them, for comparison."""

    name = "cache_aware_blocks"

    def choose(
        self,
        keys: list[int],
        size: int,
        alive: Sequence[int],
        load: dict[int, int],
        now: float,
        ticket: ca.Ticket | None = None,
        prompt: ca.Prefix | None = None,
    ) -> int:
        return super().choose(keys, size, alive, load, now, ticket, ca.Prefix(keys))


class CacheAwareUnbounded(CacheAware):
    """``cache_aware`` whose index learns no capacity (the default before it did)."""

    name = "cache_aware_unbounded"

    def __init__(self) -> None:
        super().__init__(learn=False)


class CacheAwareCapacity(CacheAware):
    """``cache_aware`` with the replicas' cache size known to its index (:func:`replica_blocks`)."""

    name = "cache_aware_capacity"

    def __init__(self) -> None:
        super().__init__(replica_blocks=replica_blocks())


class SGLang(Router):
    name = "sglang"
    CACHE_THRESHOLD = 0.5
    BALANCE_ABS = 32
    BALANCE_REL = 1.0001
    MAX_BLOCKS = 50_000  # per replica (sgl-router: max_tree_size characters)

    def __init__(self) -> None:
        super().__init__()
        self.trees: dict[int, OrderedDict[int, None]] = {}

    def _tree(self, replica: int) -> OrderedDict[int, None]:
        return self.trees.setdefault(replica, OrderedDict())

    def choose(
        self,
        keys: list[int],
        size: int,
        alive: Sequence[int],
        load: dict[int, int],
        now: float,
        ticket: ca.Ticket | None = None,
        prompt: ca.Prefix | None = None,
    ) -> int:
        loads = [load[r] for r in alive]
        if max(loads) - min(loads) > self.BALANCE_ABS and max(loads) > self.BALANCE_REL * min(
            loads
        ):
            chosen = self._least(alive, load)
        else:
            depth = {r: self._depth(self._tree(r), keys) for r in alive}
            best = max(alive, key=lambda r: depth[r])
            if size and depth[best] * ca.BLOCK_BYTES / size > self.CACHE_THRESHOLD:
                chosen = best
            else:
                chosen = min(alive, key=lambda r: len(self._tree(r)))
        tree = self._tree(chosen)
        for key in keys:
            tree[key] = None
            tree.move_to_end(key)
        while len(tree) > self.MAX_BLOCKS:
            tree.popitem(last=False)
        return chosen

    @staticmethod
    def _depth(tree: OrderedDict[int, None], keys: list[int]) -> int:
        depth = 0
        for key in keys:
            if key not in tree:
                break
            depth += 1
        return depth

    def leave(self, replica: int) -> None:
        self.trees.pop(replica, None)


class ConsistentHash(Router):
    name = "chash"

    def choose(
        self,
        keys: list[int],
        size: int,
        alive: Sequence[int],
        load: dict[int, int],
        now: float,
        ticket: ca.Ticket | None = None,
        prompt: ca.Prefix | None = None,
    ) -> int:
        if not keys:
            return self._least(alive, load)
        key = keys[min(3, len(keys) - 1)]
        return max(alive, key=lambda r: zlib.crc32(b"%d:%d" % (key, r)))


def make(name: str) -> Router:
    return {
        "least_load": LeastLoad,
        "cache_aware": CacheAware,
        "cache_aware_blocks": CacheAwareBlocks,
        "cache_aware_unbounded": CacheAwareUnbounded,
        "cache_aware_capacity": CacheAwareCapacity,
        "sglang": SGLang,
        "chash": ConsistentHash,
    }[name]()
