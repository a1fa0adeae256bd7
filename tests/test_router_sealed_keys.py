"""API keys named by ``api_keys_env`` survive a controller restarted without the variable.

`serve up` sends the variables' values from the command's environment; the
controller seals them with the spec's secrets (encrypted, never stored in
clear), and a controller restarted by a command whose environment lacks the
variable still has the key (before: every request got 401 while status said
READY).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiohttp
import pytest

from skyctl.secrets import Secrets, api_keys_from_environment
from skyctl.spec_yaml import parse_spec
from tests.test_controller import FIXED, Harness

KEY = "sk-sealed-7f3a9c"
SPEC = FIXED.format(name="web", replicas=1).replace(
    "  replicas: 1", "  replicas: 1\n  auth:\n    api_keys_env: SERVE_API_KEY"
)


async def get(h: Harness, key: str | None) -> int:
    svc = h.store.get_service("web")
    assert svc is not None
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{svc.router_port}/", headers=headers) as resp,
    ):
        return resp.status


async def test_a_key_from_the_environment_survives_a_restart_without_the_variable(
    h: Harness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SERVE_API_KEY", raising=False)  # the controller never had it
    spec = parse_spec(SPEC, "svc.yaml")
    sent = api_keys_from_environment(spec, {"SERVE_API_KEY": KEY, "OTHER": "x"})
    assert sent == {"SERVE_API_KEY": KEY}  # only the variables the spec names
    await h.controller.create_service(SPEC, None, api_keys=sent)
    await h.until(lambda: h.ready("web") == 1)
    assert await get(h, KEY) == 200 and await get(h, None) == 401

    await h.restart()  # a new controller: its environment has no SERVE_API_KEY
    await h.until(lambda: h.ready("web") == 1)
    assert await get(h, KEY) == 200
    assert await get(h, "wrong") == 401

    with sqlite3.connect(tmp_path / "state.db") as db:  # never stored in clear
        dump = "\n".join(db.iterdump())
    assert KEY not in dump


def test_sealed_keys_open_with_the_spec_and_only_named_ones_are_kept(tmp_path: Path) -> None:
    secrets = Secrets(tmp_path / "secret.key")
    sealed = secrets.seal(SPEC, "svc.yaml", api_keys={"SERVE_API_KEY": KEY, "OTHER": "x"})
    assert sealed.ciphertext is not None and KEY not in sealed.ciphertext
    assert KEY not in sealed.yaml_text
    opened = secrets.open(sealed.yaml_text, "svc.yaml", sealed.ciphertext)
    assert opened.api_keys == {"SERVE_API_KEY": KEY}
    assert opened.secrets == {}  # not a secret: replicas never see it
    plain = secrets.seal(SPEC, "svc.yaml")
    assert plain.ciphertext is None and plain.spec.api_keys == {}


async def test_an_update_from_a_shell_without_the_variable_keeps_the_key(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `serve update` run where SERVE_API_KEY is not set sends no value for it:
    # the new version keeps the one sealed with the current version (before: the
    # update succeeded and every request got 401)
    monkeypatch.delenv("SERVE_API_KEY", raising=False)
    await h.controller.create_service(SPEC, None, api_keys={"SERVE_API_KEY": KEY})
    await h.until(lambda: h.ready("web") == 1)
    changed = SPEC.replace("  replicas: 1", "  replicas: 1\n  load_balancing_policy: round_robin")
    assert changed != SPEC
    await h.controller.update_service("web", changed, None, api_keys={})
    assert h.store.get_service("web").current_version == 2  # type: ignore[union-attr]
    assert await get(h, KEY) == 200 and await get(h, None) == 401

    # the same spec again from that shell is no change at all (no version 3)
    result = await h.controller.update_service("web", changed, None, api_keys={})
    assert result.get("unchanged") is True

    # a value sent with the update replaces the old key
    await h.controller.update_service(
        "web", SPEC, None, api_keys={"SERVE_API_KEY": "sk-rotated-2b1e"}
    )
    assert await get(h, "sk-rotated-2b1e") == 200 and await get(h, KEY) == 401


async def test_serve_up_with_no_key_anywhere_is_told_the_endpoint_refuses_everything(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the router fails closed (401 to every request); before, `serve up` reported the
    # service READY and only controller.log said why
    monkeypatch.delenv("SERVE_API_KEY", raising=False)
    created = await h.controller.create_service(SPEC, None, api_keys={})
    (warning,) = created["warnings"]
    assert warning.startswith("service.auth: no API key: environment variable SERVE_API_KEY")
    assert "every request to web gets 401" in warning and "serve update web" in warning
    assert any(e["kind"] == "warning" for e in h.controller.events("web"))

    # a key given with the update: no warning, and the endpoint answers with it
    changed = SPEC.replace("  replicas: 1", "  replicas: 1\n  load_balancing_policy: round_robin")
    updated = await h.controller.update_service(
        "web", changed, None, api_keys={"SERVE_API_KEY": KEY}
    )
    assert "warnings" not in updated
    await h.until(lambda: h.ready("web") == 1)
    assert await get(h, KEY) == 200


async def test_a_key_in_the_controllers_environment_is_no_warning(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVE_API_KEY", KEY)  # a controller started with it (containers)
    created = await h.controller.create_service(SPEC, None, api_keys={})
    assert "warnings" not in created
