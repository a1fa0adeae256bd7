"""What the controller records about a replica that failed: kind, exit code, log tail.

The provider says an instance ended (``InstanceState.FAILED`` with a detail
such as ``process exited with code 3``); this module turns that into facts:
the end reason (FAILED for the run command, FAILED_SETUP when the log shows
the setup command failed), the exit code, a one-line failure naming the log
file, and the log's last lines. They go to the replica's row (``serve status``)
and, as a :class:`~policies.model.ReplicaEnded`, to the next plan, which
decides backoff and whether the service has FAILED (``policies.failures``).

Reading the log tail is disk I/O: it runs in a thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from policies.failures import ended_with
from policies.model import ReplicaEnded
from providers.registry import ProviderSet
from skyctl.errors import SkyctlError
from skyctl.lifecycle import EndReason
from skyctl.logtail import tail_bytes
from skyctl.store import ReplicaRecord

TAIL_LINES = 10
TAIL_BYTES = 8192
_EXIT = re.compile(r"exited with (?:exit )?code (-?\d+)")
_SETUP = re.compile(r"setup failed with exit code (-?\d+)")


def read_tail(path: str | None, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of a file ("" when there is none)."""
    if not path:
        return ""
    try:
        data = tail_bytes(path, TAIL_BYTES)  # with its rotated copy's when it was just rotated
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    kept = text.splitlines()[-lines:]
    return "\n".join(line[:300] for line in kept)


@dataclass(frozen=True)
class FailureFacts:
    reason: EndReason
    exit_code: int | None
    failure: str  # one line
    log_tail: str
    log: str | None = None  # the replica's log file, when the provider keeps one

    def fields(self) -> dict[str, Any]:
        """Columns for ``Store.update_replica``."""
        return {"exit_code": self.exit_code, "failure": self.failure, "log_tail": self.log_tail}

    def ended(self, r: ReplicaRecord, at: float, *, capacity: bool = False) -> ReplicaEnded:
        return ReplicaEnded(
            r.replica_id,
            r.version,
            self.reason,
            at,
            exit_code=self.exit_code,
            # the kind and exit code travel apart; the detail adds what they do not say
            detail=(f"log {self.log}" if self.log else "")
            if self.exit_code is not None
            else self.failure,
            capacity=capacity,
        )


def classify(
    reason: EndReason, detail: str, tail: str, log: str | None
) -> tuple[EndReason, int | None, str]:
    """The end reason, exit code and one-line failure from the provider's detail and log."""
    where = f"log {log}" if log else ""
    if reason is EndReason.FAILED:
        setup = _SETUP.search(tail)
        if setup:
            line = ended_with("setup", int(setup.group(1)))
            return (
                EndReason.FAILED_SETUP,
                int(setup.group(1)),
                "; ".join(filter(None, (line, where))),
            )
        ran = _EXIT.search(detail)
        if ran:
            line = ended_with("run", int(ran.group(1)))
            return EndReason.FAILED, int(ran.group(1)), "; ".join(filter(None, (line, where)))
    line = "; ".join(x for x in (detail.replace("\n", " ").strip(), where) if x)
    return reason, None, line


async def gather(
    providers: ProviderSet, r: ReplicaRecord, reason: EndReason, detail: str
) -> FailureFacts:
    """Facts about replica ``r`` that ended with ``reason`` (log read in a thread)."""
    log: str | None = None
    if r.instance_id:
        try:
            log = providers.get(r.location.cloud).log_path(r.instance_id)
        except SkyctlError:  # a provider that cannot be built here
            log = None
    tail = await asyncio.to_thread(read_tail, log) if log else ""
    kind, code, failure = classify(reason, detail, tail, log)
    return FailureFacts(kind, code, failure, tail, log)
