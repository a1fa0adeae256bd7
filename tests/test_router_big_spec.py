"""The router process opens a service's spec off its event loop.

Each new spec version the routing watch brings is parsed (its secrets put
back) before the endpoint opens or is reconfigured. PyYAML in pure Python
takes seconds for a spec near the 256 KiB limit, and the router process's
one loop routes every service's requests: a big spec's update stalled them
all. Now the parse runs in a thread. As tests/test_hostile_big_spec.py, the
parse is held until the loop has run again (a parse on the loop thread
waits out its deadline).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from skyctl import secrets as secrets_module
from skyctl.clock import SystemClock
from skyctl.router.endpoints import Endpoints
from skyctl.secrets import Secrets
from tests.test_hostile_big_spec import SPEC, HeldParses


async def test_a_new_spec_version_is_parsed_off_the_routers_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = Secrets(tmp_path / "secret.key")
    sealed = secrets.seal(SPEC)  # as the controller stored it
    parses = HeldParses(secrets_module.parse_spec)
    monkeypatch.setattr(secrets_module, "parse_spec", parses)
    entry = {
        "spec_version": 1,
        "yaml": sealed.yaml_text,
        "source": None,
        "secrets": sealed.ciphertext,
        "host": "127.0.0.1",
        "port": 0,
        "backends": [],
    }
    endpoints = Endpoints(secrets, SystemClock())
    try:
        await parses.run(endpoints.apply({"full": True, "services": {"web": entry}}))
        assert "web" in endpoints.routers, endpoints.errors
        await parses.run(endpoints.apply({"services": {"web": {**entry, "spec_version": 2}}}))
    finally:
        await endpoints.close(1.0)
    assert parses.calls == 2 and parses.on_loop_thread == []
