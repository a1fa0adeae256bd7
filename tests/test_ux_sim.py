"""``skyctl sim`` as a new user meets it: a missing optional extra is said before the replay."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import skyctl.sim
from skyctl.cli_sim import sim

SPEC = """
name: ux-sim
resources:
  use_spot: true
service:
  readiness_probe: /
  replicas: 1
run: python -m http.server $PORT
"""


def test_plot_without_matplotlib_fails_before_replaying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quickstart's --plot without the plot extra: exit 2, one line, and no replay first
    (it took 7.7 s of the bundled trace before saying matplotlib was missing)."""
    spec = tmp_path / "svc.yaml"
    spec.write_text(SPEC)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.delitem(sys.modules, "skyctl.sim.plot", raising=False)
    replays: list[object] = []
    monkeypatch.setattr(skyctl.sim, "simulate", lambda *a, **k: replays.append(a))
    res = CliRunner().invoke(
        sim, [str(spec), "--trace", "aws-v100-2023-02", "--plot", str(tmp_path / "sim.png")]
    )
    assert res.exit_code == 2, res.output
    assert res.output.strip().splitlines() == [
        "error: --plot needs matplotlib: pip install 'skyctl[plot]'"
    ]
    assert replays == []
    assert not (tmp_path / "sim.png").exists()
