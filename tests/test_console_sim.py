"""``skyctl sim --html FILE``: the report as one standalone page (table, data, charts).

The browser draws it in tests/test_console_browser.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from skyctl.cli_sim import sim
from tests.test_sim_cli import SPEC


def write_report(tmp_path: Path) -> Path:
    spec = tmp_path / "svc.yaml"
    spec.write_text(SPEC)
    folder = tmp_path / "trace"
    (folder / "availability").mkdir(parents=True)
    rows = ["date,availability"] + [
        f"2023-01-01 0{h}:00:00,{a}" for h, a in enumerate([1, 0, 1, 1])
    ]
    (folder / "availability" / "us-east-1a_v100_1.csv").write_text("\n".join(rows) + "\n")
    (folder / "spot_prices.json").write_text(json.dumps({"us-east-1a_v100_1": [1.0] * 4}))
    (folder / "trace.json").write_text(json.dumps({"ondemand_price": 4.0}))
    out = tmp_path / "report.html"
    res = CliRunner().invoke(
        sim,
        [
            str(spec),
            "--trace",
            str(folder),
            "--policy",
            "skyhedge",
            "--policy",
            "ondemand_only",
            "--html",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    return out


def test_the_html_report_holds_the_table_and_each_policys_timeline(tmp_path: Path) -> None:
    html = write_report(tmp_path).read_text()
    assert html.count("<tr>") == 3  # header + two policies
    assert "<td>skyhedge</td>" in html and "<td>ondemand_only</td>" in html
    assert "<script src=" not in html and "<link " not in html  # one standalone file
    data = json.loads(re.search(r'id="sim-data">(.*?)</script>', html, re.S).group(1))  # type: ignore[union-attr]
    assert set(data) == {"skyhedge", "ondemand_only"}
    hours, spot, ondemand, target = data["ondemand_only"]["ready"]
    assert len(hours) == len(spot) == len(ondemand) == len(target) > 0
    assert max(spot) == 0 and max(ondemand) >= 1  # on-demand only never runs spot
    times, cost = data["skyhedge"]["cost"]
    assert cost == sorted(cost) and cost[-1] > 0  # cumulative
    assert times[0] == 0.0 and times[-1] == data["skyhedge"]["hours"]  # to the window's end
    assert data["skyhedge"]["ondemand_cost"] == 4.0 * data["skyhedge"]["hours"]
