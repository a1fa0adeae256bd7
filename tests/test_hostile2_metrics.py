"""The controller's ``/metrics`` stays bounded as services come and go.

The readiness-probe histogram kept two label sets (ok, fail) of every service
the controller ever ran, until it restarted: a CI that creates a service per
branch or pull request grew every scrape without end. Now the series of a
service no longer stored are dropped at the next scrape. Label values are
escaped by the exposition format (quotes, backslashes, newlines).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from skyctl.controller import Controller
from tests.helpers.fake_controller import fake_controller

SPEC = "name: {name}\nservice:\n  replicas: 0\nrun: sleep 1000\n"


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[Controller]:
    async with fake_controller(tmp_path) as controller:
        yield controller


def probe_services(text: str) -> set[str]:
    return {
        sample.labels["service"]
        for family in text_string_to_metric_families(text)
        if family.name == "skyctl_probe_duration_seconds"
        for sample in family.samples
    }


async def test_the_probe_series_of_a_removed_service_are_dropped(controller: Controller) -> None:
    await controller.create_service(SPEC.format(name="kept"), None)
    metrics = controller.metrics
    for name in ("kept", "gone-1", "gone-2"):  # as each service's prober reports
        observe = metrics.probe_observer(name)
        observe(0.01, True)
        observe(0.02, False)
    assert probe_services(metrics.render().decode()) == {"kept"}
    metrics.probe_observer("gone-1")(0.01, True)  # created again under the same name
    await controller.create_service(SPEC.format(name="gone-1"), None)
    assert probe_services(metrics.render().decode()) == {"kept", "gone-1"}
