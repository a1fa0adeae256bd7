"""Spec values other than ``setup`` and ``run`` never become shell code.

``setup`` and ``run`` are the user's shell code; everything else (envs,
secrets, the service name, the workdir) reaches the replica as data: quoted
with ``shlex.quote`` in the cloud boot script, passed as process environment
and arguments by the local provider. Each test feeds values a shell would
execute if they were pasted into a command, runs the result for real, and
checks that the replica sees the exact values and that no command ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from providers.base import LaunchRequest
from providers.bootstrap import render_bootstrap
from providers.local import LocalProvider
from skyctl.clock import FakeClock
from skyctl.spec_yaml import parse_spec
from skyctl.types import Location, Offering
from tests.helpers.waiting import eventually

ROOT = Path(__file__).resolve().parent.parent
NAME = "svc'\"$(touch CANARY-name)`touch CANARY-name2`"


def hostile(canary: Path) -> dict[str, str]:
    """Values that run ``touch CANARY...`` if a shell ever evaluates them."""
    c = str(canary)
    return {
        "SUBST": f"$(touch {c}-subst)",
        "BACKTICK": f"`touch {c}-tick`",
        "QUOTE": f"'; touch {c}-quote; echo '",
        "DQUOTE": f'"; touch {c}-dquote; echo "',
        "NEWLINE": f"x\ntouch {c}-newline",
        "EXPANSIONS": "${HOME} $PATH !! * ~ $((1+1))",
        "BACKSLASH": "a\\b\\'c\\",
        "EMPTY": "",
    }


def dump_env(names: list[str], out: str) -> str:
    """A `run` that writes the named variables and its cwd as JSON to ``out``."""
    code = (
        "import json, os, sys; json.dump({'env': {k: os.environ.get(k) for k in sys.argv[2:]}, "
        "'cwd': os.getcwd()}, open(sys.argv[1], 'w'))"
    )
    return f'{sys.executable} -c "{code}" {out} {" ".join(names)}'


def canaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("CANARY"))


# ------------------------------------------------------------ cloud boot script


def test_the_boot_script_exports_hostile_values_verbatim_and_runs_none_of_them(
    tmp_path: Path,
) -> None:
    envs = hostile(tmp_path / "CANARY")
    spec = parse_spec(
        "service: {replicas: 1}\n"
        f"envs: {json.dumps(dict(list(envs.items())[:4]))}\n"
        f"secrets: {json.dumps(dict(list(envs.items())[4:]))}\n"
        f"run: {json.dumps(dump_env(sorted(envs), 'env.json'))}\n"
    )
    request = LaunchRequest(
        service=NAME.replace("CANARY", str(tmp_path / "CANARY")),
        replica_id=1,
        version=1,
        offering=Offering(Location("aws", "us-east-1", "us-east-1a"), True, 0.1, "m5.large"),
        client_token="tok",
        spec=spec,
        envs={**spec.envs, **spec.secrets},  # as the controller merges them
    )
    script = render_bootstrap(request, work_root=str(tmp_path / "work"))
    result = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )

    assert result.returncode == 0, result.stdout + result.stderr
    (dumped,) = (tmp_path / "work").rglob("env.json")
    assert json.loads(dumped.read_text())["env"] == envs
    assert canaries(tmp_path) == []


# --------------------------------------------------------------- local provider


@pytest.fixture
async def provider(tmp_path: Path) -> AsyncIterator[LocalProvider]:
    state = tmp_path / "state"
    p = LocalProvider(None, clock=FakeClock(1_700_000_000.0), state_dir=state)
    yield p
    await p.close()
    for record in state.rglob("instances/*.json"):
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError, KeyError):
            os.killpg(int(json.loads(record.read_text())["pgid"]), signal.SIGKILL)


async def test_the_local_provider_passes_hostile_values_as_data(
    tmp_path: Path, provider: LocalProvider
) -> None:
    envs = hostile(tmp_path / "CANARY")
    workdir = tmp_path / "work dir 'q' \"dq\" $(touch CANARY-workdir)"
    workdir.mkdir()
    out = tmp_path / "out.json"
    spec = parse_spec(
        "service: {replicas: 1}\n"
        "resources: {cloud: local}\n"
        f"envs: {json.dumps(dict(list(envs.items())[:4]))}\n"
        f"secrets: {json.dumps(dict(list(envs.items())[4:]))}\n"
        f"workdir: {json.dumps(str(workdir))}\n"
        f"run: {json.dumps(dump_env(sorted(envs), str(out)) + '; exec sleep 60')}\n"
    )
    offering = next(o for o in await provider.offerings(spec) if not o.spot)
    request = LaunchRequest(
        service=NAME.replace("CANARY", str(tmp_path / "CANARY")),
        replica_id=1,
        version=1,
        offering=offering,
        client_token="tok-1",
        spec=spec,
        envs={**spec.envs, **spec.secrets},
    )
    instance = await provider.launch(request)
    try:
        await eventually(out.exists, "the replica's dump")
        await eventually(lambda: out.read_text().endswith("}"), "a complete dump")
    finally:
        await provider.terminate(instance.instance_id)

    dumped = json.loads(out.read_text())
    assert dumped == {"env": envs, "cwd": str(workdir)}
    assert canaries(tmp_path) == [] and canaries(workdir) == []


# ------------------------------------------------------------------ the source


SHELL_CALLS = re.compile(
    r"shell\s*=\s*True|os\.system\(|os\.popen\(|create_subprocess_shell\(|getstatusoutput\("
)


def test_no_module_hands_a_command_string_to_a_shell() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for pkg in ("skyctl", "providers", "policies")
        for path in sorted((ROOT / pkg).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if SHELL_CALLS.search(line)
    ]
    assert found == []
