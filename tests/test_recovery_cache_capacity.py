"""cache_aware's index bounded per replica (``replica_blocks``): a replica sent more
prompt than its cache holds stops counting as a holder of what it was sent least
recently, as its server evicts it, so a prefix goes to a replica that still holds it."""

from __future__ import annotations

from policies import cache_aware as ca

TEMPLATE = list(range(1000, 1010))  # a 10-block prefix (a few-shot template)


def _other(n: int, base: int) -> list[int]:
    return list(range(base, base + n))


def test_a_replica_sent_more_than_its_cache_no_longer_holds_what_it_was_sent_first() -> None:
    index = ca.PrefixIndex(replica_blocks=30)
    index.record(TEMPLATE, 0, now=0.0)
    index.record(TEMPLATE, 1, now=1.0)
    for n in range(3):  # replica 0 is then sent 36 other blocks: more than its 30
        index.record(_other(12, 10_000 + 100 * n), 0, now=2.0 + n)
    assert index.depths(TEMPLATE, now=5.0) == {1: 10}
    assert index.held(0) == 30 and len(index) == 40


def test_without_a_bound_every_replica_ever_sent_a_prefix_still_holds_it() -> None:
    index = ca.PrefixIndex()
    index.record(TEMPLATE, 0, now=0.0)
    index.record(TEMPLATE, 1, now=1.0)
    for n in range(3):
        index.record(_other(12, 10_000 + 100 * n), 0, now=2.0 + n)
    assert index.depths(TEMPLATE, now=5.0) == {0: 10, 1: 10}


def test_the_prefix_goes_to_the_replica_that_still_holds_it_not_one_that_evicted_it() -> None:
    # replica 0 was sent the template first, then more than its cache of other prompts;
    # replica 1 was sent it since; replica 0 is the less loaded, and without the bound the
    # index named both holders, so the load sent the template to 0, which prefilled it whole
    homes = ca.Homes(replica_blocks=30)
    sends = [(TEMPLATE, 1)] + [(_other(12, 10_000 + 100 * n), 0) for n in range(3)]
    for at, (keys, replica) in enumerate([(TEMPLATE, 0), *sends]):
        ticket = ca.Ticket()
        homes.sent(ca.Prefix(keys), replica, 0, ticket, float(at))
        homes.answered(ticket)  # nothing pending: the ranking is by depth, then load
    order, depths = homes.order(ca.Prefix([*TEMPLATE, 7, 8]), [0, 1], [1.0, 2.0], now=5.0)
    assert [0, 1][order[0]] == 1 and depths == [0, 10]


def test_a_prefix_sent_again_is_kept_and_its_head_outlives_its_tail() -> None:
    index = ca.PrefixIndex(replica_blocks=24)
    index.record(TEMPLATE, 0, now=0.0)
    index.record(_other(10, 10_000), 0, now=1.0)
    index.record(TEMPLATE, 0, now=2.0)  # used again: the least recently sent is the other
    index.record(_other(10, 20_000), 0, now=3.0)
    assert index.depths(TEMPLATE, now=4.0) == {0: 10}
    assert index.depths(_other(10, 10_000), now=4.0) == {0: 4}  # its head, the tail gone
    assert index.held(0) == 24 and len(index) == 24


def test_what_a_replica_forgets_stays_held_by_the_others_and_undo_after_it_is_harmless() -> None:
    index = ca.PrefixIndex(replica_blocks=12)
    index.record(TEMPLATE, 1, now=0.0)
    fresh = index.record(TEMPLATE, 0, now=1.0)
    index.record(_other(12, 10_000), 0, now=2.0)  # replica 0 forgets the template
    index.undo(fresh, 0, 1.0)  # the template's copy to 0 failed after all
    assert index.depths(TEMPLATE, now=3.0) == {1: 10}
    assert index.depths(_other(12, 10_000), now=3.0) == {0: 12}
    assert len(index) == 22 and index.blocks() == 22
