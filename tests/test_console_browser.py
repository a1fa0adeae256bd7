"""The web console in a real headless browser (Debian's chromium, driven by Playwright).

A spot service runs on the local provider with a hand-made trace that takes
two of its three zones away after a few seconds. The page, opened from the
address ``skyctl console --no-browser`` prints, shows the live service, then
shows a replica PREEMPTED without being reloaded (server-sent events), and the
browser logs no error (console messages, page errors, CSP violations, failed
requests).

CI installs chromium from Debian's packages (.ci/run) and Playwright from
PyPI; Playwright's own browser downloads are not used. With
``SKYCTL_SCREENSHOTS=DIR`` the test also saves the screenshots docs/console.md
shows.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import run_cli
from tests.helpers.tools import missing
from tests.test_e2e_local import ECHO

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTAGE_TICK = 14  # zones us-east-1a and us-east-2a go at this trace tick (one a second)

SPEC = """\
name: console-demo
service:
  readiness_probe:
    path: /health
    initial_delay_seconds: 30
    period_seconds: 0.5
  replica_policy:
    min_replicas: 2
    max_replicas: 2
resources:
  cloud: local
  use_spot: true
local:
  trace: trace
  trace_tick_seconds: 1
  notice_seconds: 2
  ondemand_price: 3.06
run: exec {python} {echo}
"""


def write_trace(folder: Path) -> None:
    zones = {
        "us-east-1a": [1] * OUTAGE_TICK + [0] * 200,
        "us-east-2a": [1] * OUTAGE_TICK + [0] * 200,
        "us-west-2a": [1] * (OUTAGE_TICK + 200),
    }
    avail = folder / "availability"
    avail.mkdir(parents=True)
    prices = {}
    for i, (zone, values) in enumerate(zones.items()):
        rows = ["date,availability"]
        for tick, v in enumerate(values):
            t = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(1_676_498_896 + 195 * tick))
            rows.append(f"{t},{v}")
        (avail / f"{zone}_v100_1.csv").write_text("\n".join(rows) + "\n")
        prices[f"{zone}_v100_1"] = [0.9 + 0.1 * i] * len(values)
    (folder / "spot_prices.json").write_text(json.dumps(prices))


def _playwright() -> Any:
    if not Path(CHROMIUM).exists():
        missing("needs chromium (apt-get install -y chromium; .ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("needs playwright (pip install playwright)")
    return sync_playwright


@pytest.mark.timeout(240)
def test_the_console_shows_a_live_service_and_a_preemption_without_errors(
    tmp_path: Path, skyctl_home: Path
) -> None:
    sync_playwright = _playwright()
    write_trace(tmp_path / "trace")
    spec = tmp_path / "spot.yaml"
    spec.write_text(SPEC.format(python=sys.executable, echo=ECHO))
    up = run_cli(skyctl_home, "serve", "up", str(spec), "--timeout", "90")
    assert up.returncode == 0, up.stdout + up.stderr
    shots = os.environ.get("SKYCTL_SCREENSHOTS")
    endpoint = next(w for w in up.stdout.split() if w.startswith("http://127.0.0.1:"))
    stop = threading.Event()
    traffic = threading.Thread(target=_traffic, args=(endpoint, stop), daemon=True)
    traffic.start()
    try:
        printed = run_cli(skyctl_home, "console", "--no-browser")
        assert printed.returncode == 0, printed.stderr
        url = printed.stdout.strip()
        assert url.startswith("http://127.0.0.1:") and "/console/login?token=" in url

        errors: list[str] = []
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(tmp_path / "profile"),  # a new, empty user data dir
                executable_path=CHROMIUM,
                args=FLAGS,
                viewport={"width": 1400, "height": 1000},
            )
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: _failed(errors, r))
            page.goto(url)
            assert page.url.endswith("/console/")  # the token is gone from the address

            section = page.locator('section.service[data-name="console-demo"]')
            section.wait_for()
            page.locator("tr.replica.st-READY").first.wait_for()
            assert "READY" in section.locator("h2").inner_text()
            assert "http://127.0.0.1:" in section.locator(".endpoint").inner_text()
            page.wait_for_function("() => Number(document.body.dataset.updates) >= 3")  # live
            page.locator("#cost-console-demo canvas").wait_for()
            page.locator("#traffic-console-demo canvas").wait_for()
            page.wait_for_function(  # the router's traffic reaches the replica table
                "() => [...document.querySelectorAll('tr.replica.st-READY td:nth-child(9)')]"
                ".some((td) => parseFloat(td.textContent) > 0)"
            )
            page.evaluate("window.__sameDocument = true")
            if shots:
                page.screenshot(path=f"{shots}/console-live.png", full_page=True)

            preempted = page.locator('tr.replica[data-status="TERMINATED"]', has_text="PREEMPTED")
            preempted.first.wait_for(timeout=90_000)
            assert page.evaluate("window.__sameDocument") is True  # updated, not reloaded
            assert page.locator("svg rect.end-PREEMPTED").count() >= 1  # on the timeline
            assert page.locator("tr.ev-preempted").count() >= 1 or "preempt" in (
                section.locator("details.events").inner_text().lower()
            )
            page.locator("tr.replica.st-READY").nth(1).wait_for(timeout=90_000)  # replaced
            if shots:
                page.wait_for_timeout(1500)
                page.screenshot(path=f"{shots}/console-preempted.png", full_page=True)
            context.close()
        assert errors == []
    finally:
        stop.set()
        traffic.join()
        down = run_cli(skyctl_home, "serve", "down", "console-demo")
        assert down.returncode == 0, down.stdout + down.stderr


def _traffic(endpoint: str, stop: threading.Event) -> None:
    """A light steady load (about 20 requests a second) so the traffic chart has data."""
    while not stop.wait(0.05):
        with contextlib.suppress(OSError):
            urllib.request.urlopen(endpoint + "/", timeout=5).close()


def _failed(errors: list[str], request: Any) -> None:
    # the event stream is cut when the page closes; anything else failing is an error
    if not request.url.endswith("/console/events"):
        errors.append(f"request failed: {request.url} {request.failure}")


def test_a_sim_report_page_draws_its_charts_without_errors(tmp_path: Path) -> None:
    sync_playwright = _playwright()
    from tests.test_console_sim import write_report

    page_file = write_report(tmp_path)
    errors: list[str] = []
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=FLAGS
        )
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.goto(page_file.as_uri())
        page.wait_for_function("() => document.body.dataset.drawn === '2'")
        assert page.locator("canvas").count() == 3  # cost, and ready replicas per policy
        assert "skyhedge" in page.locator("table.results").inner_text()
        if os.environ.get("SKYCTL_SCREENSHOTS"):
            page.screenshot(
                path=f"{os.environ['SKYCTL_SCREENSHOTS']}/sim-report.png", full_page=True
            )
        context.close()
    assert errors == []
