"""``python -m benchmarks.llm_routing.index_memory``: the prefix index's memory, full.

Sends a :class:`policies.cache_aware.PrefixIndex` as the router builds it (each
replica's blocks in order of use, ready for the bound learned from what the
replica publishes) at its default bound
(``max_prefixes``, 200,000 (block, replica) pairs) half as many again in
prompts of 500 blocks, each to 1, 2 or 4 replicas, and prints the bytes
tracemalloc counts per pair and in all (docs/spec.md, docs/router.md quote it).
"""

from __future__ import annotations

import random
import tracemalloc

from policies import cache_aware as ca


def measure(holders: int, entries: int = ca.DEFAULT_MAX_ENTRIES) -> tuple[int, float]:
    """(pairs held, bytes allocated) once the index is full of prompts ``holders`` replicas hold."""
    rng = random.Random(holders)
    prompts = [rng.randbytes(ca.BLOCK_BYTES * 500) for _ in range(entries * 3 // 1000 + 1)]
    tracemalloc.start()
    try:
        index = ca.PrefixIndex(entries, ca.DEFAULT_TTL, ordered=True)
        for n, prompt in enumerate(prompts):
            keys = ca.block_keys(prompt)  # the index keeps its keys, as the router's does
            for replica in range(holders):
                index.record(keys, replica, n * 0.01)
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return len(index), float(used)


def main() -> None:
    print("| replicas holding each block | pairs | bytes per pair | in all |")
    print("| ---: | ---: | ---: | ---: |")
    for holders in (1, 2, 4):
        pairs, used = measure(holders)
        print(f"| {holders} | {pairs:,} | {used / pairs:.0f} | {used / 1e6:.0f} MB |")


if __name__ == "__main__":
    main()
