"""cache_aware's prefix index: a replica leaving costs its own pairs, a failed copy is
taken back, and the bounds hold throughout."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from policies import cache_aware as ca


class Counting(OrderedDict[int, Any]):
    """The index's block map, counting every block it reads or writes by key."""

    def __init__(self) -> None:
        super().__init__()
        self.touched = 0

    def get(self, key: int, default: Any = None) -> Any:
        self.touched += 1
        return super().get(key, default)

    def __getitem__(self, key: int) -> Any:
        self.touched += 1
        return super().__getitem__(key)

    def __setitem__(self, key: int, value: Any) -> None:
        self.touched += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: int) -> None:
        self.touched += 1
        super().__delitem__(key)

    def pop(self, key: int, *default: Any) -> Any:
        self.touched += 1
        return super().pop(key, *default)

    def __iter__(self) -> Any:
        self.touched += 1
        return super().__iter__()


def prompt(n: int, blocks: int = 20) -> list[int]:
    return ca.block_keys(b"prompt %06d " % n * (blocks * ca.BLOCK_BYTES // 14 + 1))[:blocks]


def test_a_replica_leaving_touches_only_its_own_pairs_a_few_per_later_record() -> None:
    index = ca.PrefixIndex(max_entries=100_000)
    index._blocks = counting = Counting()
    for n in range(2_000):  # 40,000 pairs: replica 9 holds 5 prompts of them (100 pairs)
        index.record(prompt(n), 9 if n % 400 == 0 else n % 4, now=0.0)
    assert index.held(9) == 100 and len(index) == 40_000
    counting.touched = 0
    index.forget(9)
    assert counting.touched == 0  # no walk of the index: it left, in O(1)
    assert len(index) == 39_900 and index.depths(prompt(0), now=1.0) == {}
    index.record(prompt(1), 1, now=1.0)  # the next record takes its pairs off the blocks
    assert counting.touched <= 3 * 20 + 2 * 100 + 2  # its own keys, and each of 9's pairs
    assert index.blocks() == 40_000 - 100  # 9's blocks, held by no one else, are gone
    counting.touched = 0
    index.record(prompt(2), 2, now=1.0)
    assert counting.touched <= 3 * 20 + 2  # nothing left to sweep


def test_a_replica_that_left_is_swept_a_bounded_number_of_pairs_per_record() -> None:
    index = ca.PrefixIndex()
    for n in range(100):
        index.record(prompt(n, 50), 1, now=0.0)  # 5,000 pairs
        index.record(prompt(n, 50), 2, now=0.0)
    index.forget(1)
    for n in range(5):
        index.record(prompt(1000 + n), 3, now=1.0)
        assert index.blocks() == 100 * 50 + 20 * (n + 1)  # 2 holds them all still
        swept = sum(1 for h in index._blocks.values() if h == 2)
        assert swept == min(5_000, ca.SWEEP * (n + 1))  # 1's id off a bounded number a time
    assert index.depths(prompt(7, 50), now=1.0) == {2: 50}


def test_a_replica_back_under_its_id_holds_only_what_it_is_sent_anew() -> None:
    index = ca.PrefixIndex()
    a, b = prompt(1, 30), prompt(2, 30)
    index.record(a, 5, now=0.0)
    index.record(b, 5, now=0.0)
    index.forget(5)  # it left (its pairs not swept yet)...
    index.record(a, 5, now=1.0)  # ...and came back: sent a again
    assert index.depths(a, now=1.0) == {5: 30} and index.depths(b, now=1.0) == {}
    for n in range(40):  # the sweep takes b off it, not a
        index.record(prompt(100 + n), 6, now=1.0)
    assert index.depths(a, now=1.0) == {5: 30} and index.depths(b, now=1.0) == {}
    assert index.held(5) == 30 and len(index) == 30 + 40 * 20
    index.forget(5)
    assert len(index) == 40 * 20


def test_memory_stays_bounded_while_replicas_leave_and_join() -> None:
    index = ca.PrefixIndex(max_entries=2_000, ttl=60.0)
    for n in range(600):
        index.record(prompt(n), n % 5 + 10 * (n // 100), now=n * 0.01)
        if n % 100 == 99:
            for replica in range(10 * (n // 100), 10 * (n // 100) + 5):
                index.forget(replica)  # every replica of this round leaves
        assert len(index) <= 2_000 and index.blocks() <= 2_000 + 5 * 400
    assert len(index) == 0 and index.held(51) == 0


def test_a_failed_copy_is_taken_back_unless_the_replica_held_the_blocks_before() -> None:
    index = ca.PrefixIndex()
    shared, own = prompt(1, 10), prompt(2, 10)
    index.record(shared, 1, now=0.0)  # replica 1 held the shared prompt already
    fresh = index.record(shared + own, 1, now=1.0, end=77)
    assert fresh == [77, *reversed(own)]  # only what it did not hold
    index.undo(fresh, 1, when=1.0)  # that request failed at replica 1
    assert index.depths(shared + own, now=2.0) == {1: 10}  # what it held before stays
    assert len(index) == 10
    fresh = index.record(own, 2, now=3.0)
    index.record(own, 2, now=4.0)  # a later request sent it again: held by that one
    index.undo(fresh, 2, when=3.0)
    assert index.depths(own, now=5.0) == {2: 10}


def test_homes_take_back_a_failed_copy_and_its_pending_prefill_only() -> None:
    homes = ca.Homes()
    keys = ca.Prefix(prompt(3, 12))
    ticket = ca.Ticket()
    homes.sent(keys, 1, 0, ticket, now=0.0)  # a race: two copies
    homes.sent(keys, 2, 0, ticket, now=0.0)
    assert homes.pending.of(1) == homes.pending.of(2) == 12
    homes.failed(ticket, 1)  # the copy at 1 failed (connection refused, a 503)
    assert homes.index.depths(keys.keys, now=1.0) == {2: 12}
    assert homes.pending.of(1) == 0 and homes.pending.of(2) == 12
    homes.failed(ticket)  # then the other: no copy took it
    assert homes.index.depths(keys.keys, now=1.0) == {} and homes.pending.of(2) == 0
    order, _ = homes.order(keys, [1, 2], [0.0, 0.0], now=1.0)
    assert ca.outcome([0, 0], order[0], len(keys.keys)) == ca.MISS
