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
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Sequence

from policies import cache_aware as ca

POLICIES = ("least_load", "cache_aware", "sglang", "chash")


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
    ) -> int:
        """The replica id for a request with prefix ``keys`` of ``size`` bytes;
        ``ticket``: the request's, for :meth:`answered`."""
        raise NotImplementedError

    def answered(self, ticket: ca.Ticket) -> None:
        """The request of ``ticket`` got its first token (or ended)."""

    def leave(self, replica: int) -> None:
        """``replica`` is gone."""

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
    ) -> int:
        return self._least(alive, load)


class CacheAware(Router):
    """The router's policy: :class:`policies.cache_aware.PrefixIndex`, ``Pending``,
    ``LoadAverage`` and ``rank``, as :class:`skyctl.router.affinity.Affinity` drives them."""

    name = "cache_aware"

    def __init__(self, factor: float = ca.DEFAULT_BALANCE, slack: float = ca.DEFAULT_SLACK) -> None:
        super().__init__()
        self.index = ca.PrefixIndex()
        self.pending = ca.Pending()
        self.averages = ca.LoadAverage()
        self.factor = factor
        self.slack = slack

    def choose(
        self,
        keys: list[int],
        size: int,
        alive: Sequence[int],
        load: dict[int, int],
        now: float,
        ticket: ca.Ticket | None = None,
    ) -> int:
        held = self.index.depths(keys, now) if keys else {}
        depths = [held.get(r, 0) for r in alive]
        loads = [float(load[r]) for r in alive]
        pending = [float(self.pending.of(r)) for r in alive]
        averages = self.averages.observe(dict(zip(alive, loads, strict=True)), now)
        order = ca.rank(
            depths,
            loads,
            len(keys),
            self.factor,
            self.cursor,
            slack=self.slack,
            pending=pending,
            averages=averages,
        )
        self.cursor += 1
        first = order[0]
        chosen = alive[first]
        if keys:
            self.index.record(keys, chosen, now)
            if ticket is not None:
                self.pending.add(ticket, chosen, ca.uncached(depths[first], len(keys)))
        return chosen

    def answered(self, ticket: ca.Ticket) -> None:
        self.pending.release(ticket)

    def leave(self, replica: int) -> None:
        self.index.forget(replica)
        self.pending.forget(replica)
        self.averages.forget(replica)


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
    ) -> int:
        if not keys:
            return self._least(alive, load)
        key = keys[min(3, len(keys) - 1)]
        return max(alive, key=lambda r: zlib.crc32(b"%d:%d" % (key, r)))


def make(name: str) -> Router:
    return {
        "least_load": LeastLoad,
        "cache_aware": CacheAware,
        "sglang": SGLang,
        "chash": ConsistentHash,
    }[name]()
