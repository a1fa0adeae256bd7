"""The example specs in manifests/ really run here: up, a request answered, down."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.processes import wait_until_gone
from tests.test_e2e_local import ROOT, cli


@pytest.mark.timeout(180)
@pytest.mark.parametrize("manifest", ["http-server.yaml", "spot-local-trace.yaml"])
def test_the_example_manifest_serves_requests(manifest: str, skyctl_home: Path) -> None:
    up = cli(skyctl_home, "serve", "up", str(ROOT / "manifests" / manifest), "--timeout", "120")
    assert up.returncode == 0, up.stdout + up.stderr
    svc = json.loads(cli(skyctl_home, "serve", "status", "-o", "json").stdout)[0]
    with urllib.request.urlopen(svc["endpoint"] + "/", timeout=10) as r:
        assert r.status == 200
    down = cli(skyctl_home, "serve", "down", "--all", "--yes")
    assert down.returncode == 0, down.stdout + down.stderr
    assert wait_until_gone(str(skyctl_home)) == []
