"""Issue 13/14 scenarios through the command line, as a user meets them.

- A service whose endpoint cannot open (TLS files that hold no key): `serve
  up` does not say "ready" for an endpoint nobody can reach; it exits 1 with the
  reason naming ``service.tls``, and the service can still be taken down, leaving
  nothing behind.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers.processes import pids_mentioning
from tests.test_e2e_local import cli

TLS_SPEC = """\
name: tlsbad
service:
  readiness_probe: /
  replicas: 1
  tls:
    keyfile: {missing}/nope.key
    certfile: {missing}/nope.crt
run: exec {python} -m http.server "$PORT" --bind 127.0.0.1
"""


@pytest.mark.timeout(180)
def test_an_endpoint_that_cannot_open_fails_serve_up_and_the_service_still_goes_down(
    tmp_path: Path, skyctl_home: Path
) -> None:
    spec = tmp_path / "tls.yaml"
    spec.write_text(TLS_SPEC.format(missing=tmp_path, python=sys.executable))
    # `serve up` refuses key or cert files it cannot read before submitting (one line,
    # tests/test_hostile_cli.py); files that are there but hold no PEM get past it
    # and reach the router, which cannot open the endpoint with them
    (tmp_path / "nope.key").write_text("not a key\n")
    (tmp_path / "nope.crt").write_text("not a certificate\n")
    up = cli(skyctl_home, "serve", "up", str(spec), "--timeout", "120")
    assert up.returncode == 1, up.stdout + up.stderr
    assert "is ready" not in up.stdout
    line = up.stderr.strip().splitlines()[-1]
    assert line.startswith("error: service tlsbad (https://127.0.0.1:"), line
    assert "endpoint not open: service.tls" in line and "nope.crt" in line
    assert "PEM" in line and "skyctl serve down tlsbad" in line

    down = cli(skyctl_home, "serve", "down", "tlsbad", "--timeout", "60")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "nothing left" in down.stdout
    assert cli(skyctl_home, "serve", "status").stdout.strip() == "No services."
    assert not pids_mentioning(str(skyctl_home / "local"))  # no replica left running
