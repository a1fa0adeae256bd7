"""Starting ``skyctl`` imports only what every command needs: the test suite and users
start thousands of CLI processes, and each paid for the cloud SDKs' providers, the
store (sqlalchemy), the controller's web stack (aiohttp), the simulator and the
policies (about 0.35 s of CPU of the 0.6 s a ``skyctl --help`` took; benchmarks/startup.py).
A command imports what it uses when it runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# what `import skyctl.cli` imported before (what each costs at import: benchmarks/startup.py)
NOT_AT_START = (
    "boto3",
    "botocore",
    "google",
    "azure",
    "kubernetes",
    "sqlalchemy",  # the store: serve status asks the controller over HTTP
    "aiohttp",
    "asyncio",  # the supervisor's event loop (supervisor_files has what the CLI asks)
    "rich",  # tables and progress: when shown
    "yaml",  # spec files, config.yaml: when read
    "cryptography",  # secrets: when a spec is sent
    "dotenv",
    "urllib.request",  # http.client, email, ssl: by the first call to a controller
    "http.client",
    "policies",
    "providers",
    "skyctl.sim",
    "skyctl.spec",
    "skyctl.store",
    "skyctl.controller",
    "skyctl.router",
    "skyctl.console",
    "skyctl.supervisor",
)


def test_importing_the_cli_imports_no_sdk_store_web_stack_or_simulator() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import sys, skyctl.cli; print(*sorted(sys.modules))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = out.stdout.split()
    assert "skyctl.cli" in loaded and "click" in loaded  # what was measured is the CLI
    found = [m for m in loaded if any(m == n or m.startswith(n + ".") for n in NOT_AT_START)]
    assert found == []
