"""`serve up` of a spec whose endpoint port another program holds: one line naming the
address and the key to change, and nothing created."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

SPEC = """\
name: taken
service:
  readiness_probe: /
  replicas: 1
  router:
    port: {port}
run: exec python3 -m http.server "$PORT" --bind 127.0.0.1
"""


def _skyctl(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SKYCTL_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "skyctl", *args], env=env, capture_output=True, text=True, timeout=90
    )


def test_a_port_another_program_holds_is_named_with_its_key(
    skyctl_home: Path, tmp_path: Path
) -> None:
    """It said `cannot open its endpoint: [Errno 98] Address already in use`: no port, no key."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        spec = tmp_path / "taken.yaml"
        spec.write_text(SPEC.format(port=port))
        try:
            up = _skyctl(skyctl_home, "serve", "up", str(spec))
            status = _skyctl(skyctl_home, "serve", "status", "--json")
            stop = _skyctl(skyctl_home, "controller", "stop", "--all")
        finally:
            _skyctl(skyctl_home, "controller", "stop", "--all")
    assert up.returncode == 2, up
    assert up.stderr.strip().splitlines() == [
        f"error: service 'taken': cannot open its endpoint: 127.0.0.1:{port} "
        "(service.router.port): Address already in use"
    ]
    assert status.stdout.strip() == "[]"
    # the controller this `serve up` started for it is gone with the refusal (it kept
    # running, serving nothing, until `controller stop --all`)
    assert stop.stdout.strip() == "No controller is running.", stop
