"""The prefill the router has sent each replica and not yet seen answered.

Part of the ``cache_aware`` policy (:mod:`policies.cache_aware`, which
re-exports both classes): :class:`Ticket` is one request's copies,
:class:`Pending` the uncached prompt blocks per replica still ahead of a new
request's first token there. Pure: no clock, no I/O.
"""

from __future__ import annotations


class Ticket:
    """One request's copies in a :class:`Homes`: per copy sent, its prefill counted
    in :class:`Pending` (replica, blocks), what its record added to the index
    (replica, keys, when), to take back if that copy fails (:meth:`Homes.failed`),
    and the index entries it touched (replica, entries), counted towards the
    replica's capacity once answered (:class:`policies.cache_capacity.Capacity`)."""

    __slots__ = ("claims", "sent", "shares")

    def __init__(self) -> None:
        self.shares: list[tuple[int, int]] = []
        self.claims: list[tuple[int, list[int], float]] = []
        self.sent: list[tuple[int, int]] = []


class Pending:
    """Per replica, the prompt blocks sent and not yet answered with a first byte.

    :meth:`add` counts a copy sent (its uncached blocks, by the index) on the
    request's :class:`Ticket`; :meth:`release` takes the whole ticket back
    when the first response bytes arrive or the request ends (idempotent:
    whichever comes first); :meth:`forget` drops a replica that left. An
    estimate (the index's guess of what is cached), never negative.
    """

    def __init__(self) -> None:
        self._blocks: dict[int, int] = {}

    def of(self, replica: int) -> int:
        return self._blocks.get(replica, 0)

    def add(self, ticket: Ticket, replica: int, blocks: int) -> None:
        if blocks > 0:
            ticket.shares.append((replica, blocks))
            self._blocks[replica] = self._blocks.get(replica, 0) + blocks

    def release(self, ticket: Ticket, replica: int | None = None) -> None:
        """Take back ``ticket``'s shares (only ``replica``'s with it)."""
        if replica is None:
            shares, ticket.shares = ticket.shares, []
        else:
            shares = [share for share in ticket.shares if share[0] == replica]
            ticket.shares = [share for share in ticket.shares if share[0] != replica]
        counts = self._blocks
        for rid, blocks in shares:
            left = counts.get(rid)
            if left is None:
                continue  # forgotten: the replica left
            if left > blocks:
                counts[rid] = left - blocks
            else:
                del counts[rid]

    def forget(self, replica: int) -> None:
        self._blocks.pop(replica, None)
