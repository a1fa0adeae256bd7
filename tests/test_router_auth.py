"""API keys on the service endpoint (``service.auth``): the spec keys and the router's gate."""

from __future__ import annotations

import hmac
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from skyctl.errors import SpecError
from skyctl.router import auth as auth_module
from skyctl.router.auth import ApiKeys
from skyctl.secrets import Secrets
from skyctl.spec import Auth, ServiceSection
from skyctl.spec_yaml import parse_spec
from tests.test_router_helpers import Harness, harness, section

__all__ = ["harness"]  # the fixture, used by name

KEY = "sk-live-4f9a0c1e7b2d"
OTHER = "sk-live-second-key-9"

SPEC = """\
name: svc
secrets:
  SERVE_KEY: {key}
  SPARE: {other}
service:
  replicas: 1
  auth:
{auth}
run: python -m http.server 8000
"""


def spec_text(auth: str) -> str:
    return SPEC.format(key=KEY, other=OTHER, auth=auth)


# ---- the spec ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ("    api_key_secrets: SERVE_KEY", Auth(api_key_secrets=("SERVE_KEY",))),
        (
            "    api_key_secrets: [SERVE_KEY, SPARE]\n    forward_authorization: true",
            Auth(api_key_secrets=("SERVE_KEY", "SPARE"), forward_authorization=True),
        ),
        ("    api_keys_env: [KEYS_A, KEYS_B]", Auth(api_keys_env=("KEYS_A", "KEYS_B"))),
    ],
)
def test_auth_names_keys_by_secret_or_environment_variable(auth: str, expected: Auth) -> None:
    assert parse_spec(spec_text(auth)).service.auth == expected


def test_no_auth_leaves_the_endpoint_open() -> None:
    assert parse_spec(spec_text("    {}").replace("  auth:\n    {}\n", "")).service.auth is None


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ("    api_keys: [abc]", r":8: service\.auth\.api_keys: keys written here would be stored"),
        ("    api_key_secrets: NOPE", r":8: service\.auth\.api_key_secrets: no secret 'NOPE'"),
        (
            "    api_key_secrets: [SERVE_KEY, 3]",
            r":8: service\.auth\.api_key_secrets\[1\]: expected",
        ),
        ("    api_keys_env: 'bad name'", r":8: service\.auth\.api_keys_env: expected a variable"),
        ("    forward_authorization: true", r":7: service\.auth: give api_key_secrets or api_keys"),
        ("    api_key_secret: SERVE_KEY", r":8: service\.auth\.api_key_secret: unknown key"),
        ("    api_keys_env: A\n    forward_authorization: 1", r"forward_authorization: expected"),
    ],
)
def test_bad_auth_sections_get_a_one_line_error_with_key_and_line(auth: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as caught:
        parse_spec(spec_text(auth))
    assert "\n" not in str(caught.value) and KEY not in str(caught.value)


def test_keys_stay_out_of_the_stored_spec(tmp_path: Path) -> None:
    sealed = Secrets(tmp_path / "secret.key").seal(spec_text("    api_key_secrets: SERVE_KEY"))
    assert KEY not in sealed.yaml_text and KEY not in repr(sealed.spec.service)
    assert sealed.spec.secrets["SERVE_KEY"] == KEY  # the router gets them from here


# ---- the key check -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        (b"Bearer " + KEY.encode(), True),
        (b"bearer " + KEY.encode(), True),
        (b"BEARER  " + OTHER.encode(), True),
        (b"Bearer " + KEY.encode()[:-1], False),
        (b"Bearer " + KEY.encode() + b"x", False),
        (b"Basic " + KEY.encode(), False),
        (KEY.encode(), False),
        (b"Bearer ", False),
        (b"", False),  # the request repeated the header
        (None, False),
    ],
)
def test_only_a_bearer_token_equal_to_a_key_is_accepted(
    header: bytes | None, accepted: bool
) -> None:
    assert ApiKeys([KEY, OTHER]).check(header) is accepted


def test_every_key_is_compared_even_after_a_match(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", counting)
    keys = ApiKeys([KEY, OTHER, "third-key"])
    assert keys.check(b"Bearer " + KEY.encode())
    assert len(calls) == 3


def test_the_key_holder_shows_no_key() -> None:
    keys = ApiKeys([KEY])
    assert KEY not in repr(keys) and KEY.encode() not in b"".join(keys._digests)


def test_keys_come_from_secrets_and_the_environment_with_problems_named() -> None:
    auth = Auth(api_key_secrets=("SERVE_KEY", "GONE"), api_keys_env=("ENV_KEY", "UNSET"))
    keys = ApiKeys.from_spec(auth, {"SERVE_KEY": KEY}, {"ENV_KEY": OTHER})
    assert len(keys) == 2
    assert keys.check(b"Bearer " + OTHER.encode())
    assert keys.problems == [
        "secret GONE is missing or empty",
        "environment variable UNSET is unset or empty",
    ]


# ---- through the router --------------------------------------------------------------------


def guarded(forward: bool = False) -> ServiceSection:
    auth = Auth(api_key_secrets=("SERVE_KEY",), forward_authorization=forward)
    return replace(section(), auth=auth)


async def test_a_missing_key_gets_401_with_a_bearer_challenge(harness: Harness) -> None:
    replica = await harness.replica(1)
    _, url = await harness.router([replica.backend], guarded(), secrets={"SERVE_KEY": KEY})
    async with harness.client.get(url + "/v1/models") as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="skyctl"'
        assert (await resp.json())["service"] == "svc"
    headers = {"Authorization": "Bearer wrong"}
    async with harness.client.get(url + "/v1/models", headers=headers) as resp:
        assert resp.status == 401
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    assert replica.hits == 0


@pytest.mark.parametrize("forward", [False, True])
async def test_a_valid_key_passes_and_reaches_the_replica_only_if_forwarding(
    harness: Harness, forward: bool
) -> None:
    replica = await harness.replica(1)
    sec = guarded(forward)
    _, url = await harness.router([replica.backend], sec, secrets={"SERVE_KEY": KEY})
    headers = {"Authorization": f"Bearer {KEY}", "X-Authorization-Hint": "kept"}
    async with harness.client.post(url + "/v1/chat", data=b"{}", headers=headers) as resp:
        assert resp.status == 200
    seen = replica.seen[0].headers
    assert ("Authorization" in seen) is forward
    assert seen["X-Authorization-Hint"] == "kept"


async def test_health_stays_open_and_metrics_need_the_key(harness: Harness) -> None:
    _, url = await harness.router([], guarded(), secrets={"SERVE_KEY": KEY})
    async with harness.client.get(url + "/-/skyctl/health") as resp:
        assert resp.status == 200
    async with harness.client.get(url + "/-/skyctl/metrics") as resp:
        assert resp.status == 401
    headers = {"Authorization": f"Bearer {KEY}"}
    async with harness.client.get(url + "/-/skyctl/metrics", headers=headers) as resp:
        assert resp.status == 200
        assert 'skyctl_router_unauthorized_total{service="svc"} 1.0' in await resp.text()


async def test_without_any_key_every_request_is_refused_and_the_log_names_no_value(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    replica = await harness.replica(1)
    sec = replace(section(), auth=Auth(api_key_secrets=("SERVE_KEY",), api_keys_env=("NOPE_X",)))
    _, url = await harness.router([replica.backend], sec, secrets={"SERVE_KEY": "  "})
    async with harness.client.get(url + "/", headers={"Authorization": "Bearer  "}) as resp:
        assert resp.status == 401
    assert "NOPE_X" in caplog.text and "every request gets 401" in caplog.text


async def test_an_update_replaces_the_keys(harness: Harness) -> None:
    replica = await harness.replica(1)
    router, url = await harness.router([replica.backend], guarded(), secrets={"SERVE_KEY": KEY})
    router.reconfigure(guarded(), {"SERVE_KEY": OTHER})
    for key, expected in ((KEY, 401), (OTHER, 200)):
        headers = {"Authorization": f"Bearer {key}"}
        async with harness.client.get(url + "/", headers=headers) as resp:
            assert resp.status == expected
    router.reconfigure(section())  # auth removed: open again
    async with harness.client.get(url + "/") as resp:
        assert resp.status == 200


async def test_keys_never_reach_the_logs(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    replica = await harness.replica(1)
    _, url = await harness.router([replica.backend], guarded(), secrets={"SERVE_KEY": KEY})
    for token in (KEY, OTHER):
        async with harness.client.get(url + "/", headers={"Authorization": f"Bearer {token}"}):
            pass
    assert KEY not in caplog.text and OTHER not in caplog.text
