"""Each replica's prefix cache in the index's entries, learned from what it publishes.

Part of the ``cache_aware`` policy (:mod:`policies.cache_aware`, which re-exports
:class:`Capacity`). The index (:class:`policies.cache_aware.PrefixIndex`) counts
64-byte blocks of prompt text, one entry per block a replica was sent (and one
per chat request, its turn key); a server counts tokens. vLLM publishes both
sides of the conversion on its ``/metrics``:

- its cache in tokens: ``vllm:cache_config_info``'s ``num_gpu_blocks`` x
  ``block_size`` (summed over its engines);
- the prompt tokens that went through that cache: ``vllm:prompt_tokens_total``
  (each request's whole prompt, cached part included, counted when its first
  token comes).

The router counts, per replica, the index entries of the prompts it sent there
that were answered (:meth:`Capacity.count`, at the first response bytes, as
vLLM counts the prompt). From a replica's first sample on, entries over prompt
tokens is the index's entries per token of cache, and the replica's bound is its
cache in tokens times that: the entries it holds when its cache is full. Both
sides count every prompt whole, so a prefix sent again counts on both as it is
touched again on both. Answers are left out: a chat's answer is cached, but is
sent back as the next turn's prompt, where both sides count it (with the
generated tokens too, chat's bound came out 40% under its cache in the
benchmark, and its hit rate after a preemption fell). A cache that holds the
most recent tokens of all its traffic holds about the router's share of them,
so the ratio needs no bytes-per-token figure and counts right with other
routers or clients sending to the same replica (their tokens count, their
prompts are not in this index). Until a replica has processed
:data:`LEARN_CACHES` caches' worth of tokens since its first sample, it has no
bound (as without this: the index names it for everything it was sent); a
replica that publishes neither side never gets one. A counter that goes back (a
restarted server) starts the count again. Pure: the caller polls and passes the
figures in.
"""

from __future__ import annotations

import math
from typing import Final

# prompt tokens a replica must have processed since its first sample, in caches of its size,
# before its ratio is trusted: the counts differ by the requests in flight between
# them (a few prompts), small against one cache's worth of traffic
LEARN_CACHES: Final = 1.0


class Capacity:
    """Per replica: index entries answered, and its bound once learned (module docstring)."""

    def __init__(self) -> None:
        self._entries: dict[int, int] = {}  # replica -> entries answered since its first sample
        self._base: dict[int, float] = {}  # replica -> prompt tokens at its first sample
        self.bounds: dict[int, int] = {}  # replica -> its cache in index entries, once learned

    def count(self, replica: int, entries: int) -> None:
        """A prompt of ``entries`` index entries sent to ``replica`` was answered."""
        got = self._entries.get(replica)
        if got is not None:  # (before its first sample, or after it left: not counted)
            self._entries[replica] = got + entries

    def observe(
        self, replica: int, cache_tokens: float | None, prompt_tokens: float | None
    ) -> int | None:
        """``replica`` publishes a cache of ``cache_tokens`` and has processed
        ``prompt_tokens`` of prompts since it started: its bound in index entries,
        or None while there is none (nothing learned yet)."""
        if prompt_tokens is None or not math.isfinite(prompt_tokens):
            return self.bounds.get(replica)
        base = self._base.get(replica)
        if base is None or prompt_tokens < base:  # its first sample, or a restart
            self._base[replica] = prompt_tokens
            self._entries[replica] = 0
            return self.bounds.get(replica)
        if cache_tokens is None or not math.isfinite(cache_tokens) or cache_tokens <= 0:
            return self.bounds.get(replica)
        tokens = prompt_tokens - base
        if tokens < LEARN_CACHES * cache_tokens:
            return self.bounds.get(replica)
        bound = max(1, int(cache_tokens * self._entries[replica] / tokens))
        self.bounds[replica] = bound
        return bound

    def forget(self, replica: int) -> None:
        """``replica`` left: its counts and bound go."""
        self._entries.pop(replica, None)
        self._base.pop(replica, None)
        self.bounds.pop(replica, None)
