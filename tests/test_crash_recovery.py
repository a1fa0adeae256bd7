"""Crash safety: a controller killed (SIGKILL) at random points restarts and converges.

The campaign (``tests/helpers/crash.py``) keeps a spot service busy with
seeded random preemptions, rolling updates and a second service created and
deleted, kills the daemon after a seeded random delay, restarts it on the same
home, and checks: no service or acknowledged version lost, routers back on
their ports, the store's live replicas equal the local provider's records and
the replica processes alive (no orphan), and no replica started twice.

The long version: ``python benchmarks/crash.py --kills 100``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.crash import run_campaign

KILLS = 5


@pytest.mark.timeout(170)
async def test_a_controller_killed_at_random_points_converges_without_orphans_or_duplicates(
    skyctl_home: Path,
) -> None:
    lines: list[str] = []
    result = await run_campaign(skyctl_home, seed=7, kills=KILLS, report=lines.append)
    print("\n".join(lines))
    assert len(result.kills) == KILLS
    assert result.checks == KILLS
