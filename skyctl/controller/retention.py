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

Events are bounded in the store (``EVENTS_KEPT`` per service); the local
provider removes an ended replica's log as its row goes (``providers.local_records``).
See docs/reliability.md, "Retention".
"""

from __future__ import annotations

from collections.abc import Sequence

from skyctl.controller.runtime import ServiceRuntime
from skyctl.store import ReplicaRecord, ServiceRecord, Store

#: terminated replica rows are kept this long for `serve status -a` history
KEEP_TERMINATED_SECONDS = 3600.0
#: how often a service's history is pruned (clock seconds)
PURGE_EVERY_SECONDS = 300.0
#: stored versions kept besides those a replica row still has (the current one included)
KEEP_VERSIONS = 10


def prune(
    store: Store,
    rt: ServiceRuntime,
    svc: ServiceRecord,
    live: Sequence[ReplicaRecord],
    now: float,
) -> bool:
    """Prune ``svc``'s history if it is due; return whether anything was written."""
    if now < rt.purge_at:
        return False
    rt.purge_at = now + PURGE_EVERY_SECONDS
    wrote = store.purge_terminated(svc.name, before=now - KEEP_TERMINATED_SECONDS) > 0
    below = svc.current_version - KEEP_VERSIONS + 1
    wrote = store.purge_versions(svc.name, below=below) > 0 or wrote
    rt.forget_versions({svc.current_version, *(r.version for r in live)})
    return wrote
