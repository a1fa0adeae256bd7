"""``skyctl sim --policy``: each policy named is replayed once, in the order named."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from skyctl.cli_sim import sim

HTTP = str(Path(__file__).resolve().parent.parent / "manifests/http-server.yaml")


def test_a_policy_named_twice_is_replayed_once_in_the_order_first_named() -> None:
    named = ["spothedge", "ondemand_only", "spothedge", "ondemand_only"]
    args = [HTTP, "--trace", "gcp-h100-2025-10", "--hours", "12", "-o", "json"]
    for policy in named:
        args += ["--policy", policy]
    r = CliRunner().invoke(sim, args)
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout[r.stdout.index("[") :])
    assert [row["policy"] for row in rows] == ["spothedge", "ondemand_only"]
