"""What the controller keeps of each service's history, and for how long.

Every ``PURGE_EVERY_SECONDS`` (clock seconds) per service, at the end of one of
its ticks (small indexed deletes, nothing scanned on disk):

- an ended replica's row goes ``KEEP_TERMINATED_SECONDS`` after it ended (its
  cost facts stay in the ledger, ``skyctl.store.costs``), as SkyServe keeps
  recent replicas only;
- a stored version goes once no replica row has it and ``KEEP_VERSIONS`` newer
  ones exist (the current one always stays): a service updated every few
  minutes kept every spec it ever had;
- the parsed specs the runtime caches are those of the current version and of
  the live replicas' versions only.

The cost ledger (every service's, deleted ones' too) is bounded by
:class:`LedgerFolding`: its rows of replicas that ended more than
``LEDGER_KEEP_SECONDS`` ago are folded into per-day totals, ``FOLD_BATCH`` rows at
a time in a worker thread (``skyctl.store.ledger``), never on the event loop.

Events are bounded in the store (``EVENTS_KEPT`` per service); the local
provider removes an ended replica's log as its row goes (``providers.local_records``).
See docs/reliability.md, "Retention".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from skyctl.controller.runtime import ServiceRuntime
from skyctl.store import ReplicaRecord, ServiceRecord, Store

log = logging.getLogger(__name__)

#: terminated replica rows are kept this long for `serve status -a` history
KEEP_TERMINATED_SECONDS = 3600.0
#: how often a service's history is pruned (clock seconds)
PURGE_EVERY_SECONDS = 300.0
#: stored versions kept besides those a replica row still has (the current one included)
KEEP_VERSIONS = 10
#: the cost ledger keeps a row per ended replica this long, then folds it into days
LEDGER_KEEP_SECONDS = 7 * 86400.0
#: ledger rows folded per batch (one short write transaction in a worker thread)
FOLD_BATCH = 2000
#: a failed fold is retried after this, doubling up to FOLD_RETRY_MAX_SECONDS
FOLD_RETRY_SECONDS = 60.0
FOLD_RETRY_MAX_SECONDS = 3600.0


class LedgerFolding:
    """Folds the cost ledger's old rows, a batch at a time, in a worker thread.

    :meth:`poke` is called at every service tick and returns at once: it collects a
    finished batch, and starts the next one when due (at once after a full batch,
    else ``PURGE_EVERY_SECONDS`` on; after a failure, with backoff). A failure is
    logged and kept in :attr:`last_error` until a batch succeeds."""

    def __init__(self) -> None:
        self.task: asyncio.Task[int] | None = None
        self.due = 0.0
        self.failures = 0
        self.last_error = ""
        self.folded = 0  # rows folded by this controller

    def poke(self, store: Store, now: float) -> None:
        if self.task is not None:
            if not self.task.done():
                return
            self._collect(now)
        if now < self.due:
            return
        self.due = now + PURGE_EVERY_SECONDS
        before = now - LEDGER_KEEP_SECONDS
        if not store.ledger_foldable(before=before):  # an indexed lookup
            return
        self.task = asyncio.get_running_loop().create_task(
            asyncio.to_thread(store.fold_ledger, before=before, limit=FOLD_BATCH),
            name="fold-ledger",
        )

    def _collect(self, now: float) -> None:
        task, self.task = self.task, None
        assert task is not None
        try:
            n = task.result()
        except asyncio.CancelledError:
            return
        except Exception as e:  # a locked or failing database: retried with backoff
            self.failures += 1
            self.last_error = f"folding the cost ledger failed: {e}"
            wait = min(FOLD_RETRY_SECONDS * 2 ** (self.failures - 1), FOLD_RETRY_MAX_SECONDS)
            self.due = now + wait
            log.warning("%s (retrying in %.0f s)", self.last_error, wait)
            return
        self.failures, self.last_error = 0, ""
        self.folded += n
        if n >= FOLD_BATCH:  # more to fold: the next batch at the next tick
            self.due = now


def prune(
    store: Store,
    rt: ServiceRuntime,
    svc: ServiceRecord,
    live: Sequence[ReplicaRecord],
    now: float,
    folding: LedgerFolding | None = None,
) -> bool:
    """Prune ``svc``'s history if it is due; return whether anything was written
    (on this loop: the ledger's folding, in a worker thread, is not counted)."""
    if folding is not None:
        folding.poke(store, now)
    if now < rt.purge_at:
        return False
    rt.purge_at = now + PURGE_EVERY_SECONDS
    wrote = store.purge_terminated(svc.name, before=now - KEEP_TERMINATED_SECONDS) > 0
    below = svc.current_version - KEEP_VERSIONS + 1
    wrote = store.purge_versions(svc.name, below=below) > 0 or wrote
    rt.forget_versions({svc.current_version, *(r.version for r in live)})
    return wrote
