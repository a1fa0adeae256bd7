"""`secrets:` values reach the replica and nothing else skyctl writes down.

The store keeps a spec redacted (same lines, each secret value replaced by
``"<secret:NAME>"``) beside the values encrypted under ``secret.key`` (0600);
the controller puts them back whenever it parses a stored version. Specified
here: the redaction, the key file, the controller (store bytes, events,
status, logs, a restart, an update) and, end to end through the CLI and the
daemon on the local provider, a replica that reports a hash of its secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from providers.base import LaunchRequest
from providers.registry import ProviderSet
from skyctl.clock import FakeClock
from skyctl.controller import Controller
from skyctl.controller.api import make_app
from skyctl.errors import ConfigError, SpecError
from skyctl.secrets import KEY_FILE_NAME, Secrets, placeholder, redact
from skyctl.spec_yaml import parse_spec
from skyctl.store import Store
from skyctl.types import Instance
from tests.fakes.memory_provider import MemoryProvider
from tests.helpers.cli import run_cli

SECRET = "s3cr3t-value-XYZ"

SPEC = """\
name: vault
envs:
  PLAIN: visible
{secrets}
service:
  readiness_probe: /health
  replicas: 1
run: echo hi
"""

# how a secret value can be written in YAML; each contains SECRET
WRITINGS = {
    "plain": f"secrets:\n  API_KEY: {SECRET}",
    "double quoted, escapes": f'secrets:\n  API_KEY: "{SECRET} \\"q\\" \\t end"',
    "single quoted": f"secrets:\n  API_KEY: '{SECRET} ''q'''",
    "literal block": f"secrets:\n  API_KEY: |\n    {SECRET}\n    second line",
    "folded block, keep": f"secrets:\n  API_KEY: >+\n    {SECRET}\n    folded\n",
    "plain over two lines": f"secrets:\n  API_KEY: {SECRET}\n    continued",
    "flow mapping over lines": f'secrets: {{API_KEY: "{SECRET}\n  more", OTHER: x}}',
    "comment after it": f"secrets:\n  API_KEY: {SECRET}  # the API key",
    "tagged": f"secrets:\n  API_KEY: !!str {SECRET}",
    "nested in a flow line": f"secrets: {{OTHER: one, API_KEY: {SECRET}}}",
    "number": "secrets:\n  PIN: 4815162342",
}


def lines_outside_secrets(text: str) -> list[tuple[int, str]]:
    keep = ("name:", "envs:", "  PLAIN:", "service:", "  readiness_probe:", "  replicas:", "run:")
    return [(i, line) for i, line in enumerate(text.split("\n")) if line.startswith(keep)]


# ------------------------------------------------------------------ redaction


@pytest.mark.parametrize("writing", WRITINGS.values(), ids=WRITINGS.keys())
def test_redaction_replaces_every_secret_value_and_keeps_every_other_line(writing: str) -> None:
    text = SPEC.format(secrets=writing)
    original = parse_spec(text)
    redacted = redact(text)

    for value in original.secrets.values():
        assert value not in redacted
    assert redacted.count("\n") == text.count("\n")  # line numbers preserved
    assert lines_outside_secrets(redacted) == lines_outside_secrets(text)
    again = parse_spec(redacted)
    assert again.secrets == {name: placeholder(name) for name in original.secrets}
    assert replace(again, secrets={}, yaml_text="") == replace(original, secrets={}, yaml_text="")


@pytest.mark.parametrize(
    "text",
    [
        SPEC.format(secrets=""),
        SPEC.format(secrets="secrets: ['secrets:HF_TOKEN', 'secrets:WANDB_KEY']"),  # managed
        SPEC.format(secrets="secrets:"),
    ],
    ids=["no secrets", "managed secret names", "empty secrets"],
)
def test_a_spec_without_secret_values_is_stored_as_written(text: str) -> None:
    assert redact(text) == text


# `config:` (a SkyServe mapping we keep but do not act on) is a legal home for an anchor
REFUSED = {
    "value shared by an anchor": f"secrets:\n  API_KEY: &k {SECRET}\nenvs: {{OTHER: *k}}",
    "mapping shared by an alias": f"config: &e {{API_KEY: {SECRET}}}\nsecrets: *e",
    "merge key inside secrets": f"config: &b {{API_KEY: {SECRET}}}\nsecrets:\n  <<: *b\n  B: x",
    "merge key at the top": f"<<: {{secrets: {{API_KEY: {SECRET}}}}}",
}


@pytest.mark.parametrize("block", REFUSED.values(), ids=REFUSED.keys())
def test_secrets_behind_anchors_or_merge_keys_are_refused_in_one_line(block: str) -> None:
    text = "service: {replicas: 1}\nrun: x\n" + block
    with pytest.raises(SpecError) as err:
        redact(text, "svc.yaml")
    message = str(err.value)
    assert "\n" not in message and SECRET not in message
    assert "secrets" in message


BAD_SPECS = {
    "secret value is a list": f"secrets:\n  API_KEY: [{SECRET}]",
    "secret value is a mapping": f"secrets:\n  API_KEY: {{v: {SECRET}}}",
    "bad variable name": f"secrets:\n  1BAD: {SECRET}",
    "unclosed quote": f'secrets:\n  API_KEY: "{SECRET}',
    "bad escape": f'secrets:\n  API_KEY: "{SECRET}\\q"',
    "tab in plain value": f"secrets:\n  API_KEY: {SECRET}\t: x",
    "bad binary": f"secrets:\n  API_KEY: !!binary {SECRET}",
    "unknown tag": f"secrets:\n  API_KEY: !vault {SECRET}",
    "duplicate name": f"secrets:\n  API_KEY: {SECRET}\n  API_KEY: {SECRET}",
}


@pytest.mark.parametrize("block", BAD_SPECS.values(), ids=BAD_SPECS.keys())
def test_an_invalid_spec_never_echoes_a_secret_value(block: str, tmp_path: Path) -> None:
    text = SPEC.format(secrets=block)
    with pytest.raises(SpecError) as err:
        Secrets(tmp_path / KEY_FILE_NAME).seal(text, "vault.yaml")
    assert SECRET not in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / KEY_FILE_NAME).exists()


# -------------------------------------------------------------------- the key


def test_sealing_encrypts_the_values_and_opening_puts_them_back(tmp_path: Path) -> None:
    text = SPEC.format(secrets=WRITINGS["literal block"])
    box = Secrets(tmp_path / KEY_FILE_NAME)
    sealed = box.seal(text, "vault.yaml")
    assert sealed.ciphertext is not None
    assert SECRET not in sealed.yaml_text + sealed.ciphertext
    assert sealed.spec.yaml_text == sealed.yaml_text
    opened = Secrets(tmp_path / KEY_FILE_NAME).open(
        sealed.yaml_text, "vault.yaml", sealed.ciphertext
    )
    assert opened.secrets == parse_spec(text).secrets == sealed.spec.secrets
    assert opened.envs == {"PLAIN": "visible"}


def test_the_key_file_is_created_on_first_use_readable_by_the_user_alone(tmp_path: Path) -> None:
    key = tmp_path / "home" / KEY_FILE_NAME
    box = Secrets(key)
    box.seal(SPEC.format(secrets=""))
    assert not key.exists()  # no secrets, no key
    box.seal(SPEC.format(secrets=WRITINGS["plain"]))
    assert key.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in key.parent.iterdir()] == [KEY_FILE_NAME]  # no temp file left


def test_a_second_process_uses_the_key_the_first_one_created(tmp_path: Path) -> None:
    first, second = Secrets(tmp_path / KEY_FILE_NAME), Secrets(tmp_path / KEY_FILE_NAME)
    token = first.encrypt({"A": SECRET})
    assert second.encrypt({"B": "b"})  # finds the key: does not replace it
    assert Secrets(tmp_path / KEY_FILE_NAME).decrypt(token) == {"A": SECRET}


def sealed_token(tmp_path: Path) -> tuple[Path, str]:
    key = tmp_path / KEY_FILE_NAME
    return key, Secrets(key).encrypt({"API_KEY": SECRET})


def replace_key(key: Path) -> None:
    key.unlink()
    Secrets(key).encrypt({})  # a new, different key


def make_world_readable(key: Path) -> None:
    key.chmod(0o644)


def write_garbage(key: Path) -> None:
    key.write_text("not a key\n")


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (replace_key, "does not decrypt"),
        (Path.unlink, "is missing"),
        (make_world_readable, "chmod 600"),
        (write_garbage, "not a valid key"),
    ],
    ids=["wrong key", "missing key", "key readable by others", "garbage key"],
)
def test_a_key_problem_is_a_one_line_config_error(
    tmp_path: Path, damage: Callable[[Path], Any], expected: str
) -> None:
    key, token = sealed_token(tmp_path)
    damage(key)
    with pytest.raises(ConfigError) as err:
        Secrets(key).decrypt(token)
    message = str(err.value)
    assert expected in message and str(key) in message
    assert "\n" not in message and SECRET not in message


def test_corrupt_stored_secrets_are_a_one_line_config_error(tmp_path: Path) -> None:
    key, token = sealed_token(tmp_path)
    with pytest.raises(ConfigError, match="does not decrypt"):
        Secrets(key).decrypt(token[:-8] + "AAAAAAAA")
    with pytest.raises(ConfigError, match="corrupt"):
        Secrets(key).decrypt(Fernet(key.read_bytes().strip()).encrypt(b"[1]").decode())


def test_stored_secrets_that_do_not_match_the_spec_are_refused(tmp_path: Path) -> None:
    box = Secrets(tmp_path / KEY_FILE_NAME)
    sealed = box.seal(SPEC.format(secrets=WRITINGS["plain"]))
    with pytest.raises(ConfigError, match=r"stored secrets \(OTHER\) do not match"):
        box.open(sealed.yaml_text, None, box.encrypt({"OTHER": "x"}))


def test_a_version_stored_without_ciphertext_opens_as_written(tmp_path: Path) -> None:
    text = SPEC.format(secrets=WRITINGS["plain"])
    assert Secrets(tmp_path / KEY_FILE_NAME).open(text, None, None).secrets == {"API_KEY": SECRET}


# ------------------------------------------------------------- the controller


class RecordingProvider(MemoryProvider):
    """The in-memory provider, remembering the environment of every launch."""

    envs: list[dict[str, str]]
    ports: list[int]

    async def launch(self, request: LaunchRequest) -> Instance:
        self.envs.append(dict(request.envs))
        self.ports.append(request.port)
        return await super().launch(request)


class Harness:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.clock = FakeClock()
        self.store = Store(tmp / "state.db")
        self.provider = RecordingProvider(clock=self.clock)
        self.provider.envs = []
        self.provider.ports = []
        self.controller = self._controller()

    def _controller(self) -> Controller:
        providers = ProviderSet(config={}, clock=self.clock, local_state=self.tmp / "local")
        providers.add(self.provider)
        return Controller(self.store, providers, self.clock, tick_seconds=1.0)

    async def restart(self) -> None:
        """A new controller on the same store (replicas keep running)."""
        for name in list(self.controller.runtimes):
            await self.controller._drop_runtime(name, grace_seconds=0)
        self.controller = self._controller()
        await self.controller.start()

    async def ticks_until(self, predicate: Callable[[], bool], limit: int = 40) -> None:
        for _ in range(limit):
            if predicate():
                return
            await self.controller.tick_all()
            await self.clock.advance(1.0)
            await asyncio.sleep(0.01)  # let loopback I/O (probes) complete
        assert predicate(), f"not reached within {limit} ticks"

    def stored_bytes(self) -> bytes:
        files = [self.store.path, *self.store.path.parent.glob("state.db-*")]
        return b"".join(f.read_bytes() for f in files if f.exists())


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    await harness.controller.start()
    yield harness
    for name in list(harness.controller.runtimes):
        await harness.controller._drop_runtime(name, grace_seconds=0)
    await harness.controller.stop(0)
    await harness.provider.close()
    harness.store.close()


def with_secret(value: str) -> str:
    return SPEC.format(secrets=f"secrets:\n  API_KEY: {value}\n  MULTI: |\n    a\n    {value}")


async def test_the_replica_gets_its_secrets_and_nothing_stored_or_shown_holds_them(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = await h.controller.create_service(with_secret(SECRET), "vault.yaml")
    await h.ticks_until(lambda: bool(h.provider.envs))

    assert h.provider.envs[0] == {"PLAIN": "visible", "API_KEY": SECRET, "MULTI": f"a\n{SECRET}\n"}
    stored = h.store.get_version("vault", 1)
    assert 'API_KEY: "<secret:API_KEY>"' in stored.yaml_text
    assert stored.secrets_ciphertext
    await h.ticks_until(lambda: h.controller.describe("vault")["ready_replicas"] == 1)
    shown = json.dumps([created, h.controller.status(), h.controller.events("vault")])
    assert SECRET not in shown
    assert SECRET.encode() not in h.stored_bytes()
    assert caplog.records and SECRET not in caplog.text
    assert (h.tmp / KEY_FILE_NAME).stat().st_mode & 0o777 == 0o600


async def test_an_update_seals_the_new_secrets_and_launches_with_them(h: Harness) -> None:
    await h.controller.create_service(with_secret(SECRET), None)
    await h.ticks_until(lambda: h.controller.describe("vault")["ready_replicas"] == 1)
    await h.controller.update_service("vault", with_secret("n3w-" + SECRET), None)

    await h.ticks_until(lambda: any(e["API_KEY"] == "n3w-" + SECRET for e in h.provider.envs))
    assert h.store.get_version("vault", 2).secrets_ciphertext
    assert SECRET.encode() not in h.stored_bytes()


async def test_a_restarted_controller_launches_replacements_with_the_secrets(h: Harness) -> None:
    await h.controller.create_service(with_secret(SECRET), None)
    await h.ticks_until(lambda: h.controller.describe("vault")["ready_replicas"] == 1)
    await h.restart()
    (replica,) = h.store.list_replicas("vault")
    await h.provider.preempt("vault", replica.replica_id)

    await h.ticks_until(lambda: len(h.provider.envs) == 2)
    assert h.provider.envs[1]["API_KEY"] == SECRET


async def test_command_line_envs_and_secrets_are_sealed_and_survive_a_restart(
    h: Harness,
) -> None:
    text = SPEC.format(secrets="secrets:\n  API_KEY:\nenvs:\n  HF_TOKEN:").replace(
        "envs:\n  PLAIN: visible\n", ""
    )
    text = text.replace(
        "readiness_probe: /health",
        "readiness_probe:\n    path: /health\n"
        "    headers: {Authorization: Bearer $API_KEY, X-HF: $HF_TOKEN}",
    )
    await h.controller.create_service(
        text, None, envs={"HF_TOKEN": "hf-" + SECRET}, secrets={"API_KEY": SECRET, "NEW": "n"}
    )
    await h.ticks_until(lambda: bool(h.provider.envs))
    want = {"HF_TOKEN": "hf-" + SECRET, "API_KEY": SECRET, "NEW": "n"}
    assert h.provider.envs[0] == want
    assert SECRET.encode() not in h.stored_bytes()
    await h.restart()
    (replica,) = h.store.list_replicas("vault")
    await h.provider.preempt("vault", replica.replica_id)

    await h.ticks_until(lambda: len(h.provider.envs) == 2)
    assert h.provider.envs[1] == want
    probe = h.controller.runtimes["vault"].prober.probe
    assert probe.headers == {"Authorization": f"Bearer {SECRET}", "X-HF": f"hf-{SECRET}"}
    assert SECRET not in json.dumps([h.controller.status(), h.controller.events("vault")])


@pytest.mark.parametrize(
    ("service", "resources", "want"),
    [
        ("{replicas: 1}", "{ports: 8000}", 8000),  # SkyServe: the one port is the serving one
        ("{replicas: 1, ports: 9000}", "{ports: [8000, 9000]}", 9000),
        ("{replicas: 1}", "{}", 8080),  # no port fixed: $PORT, 8080 on a cloud
    ],
    ids=["the one resources port", "service.ports among several", "none"],
)
async def test_a_cloud_replica_is_told_the_port_its_spec_serves_on(
    h: Harness, service: str, resources: str, want: int
) -> None:
    text = f"name: p\nservice: {service}\nresources: {resources}\nrun: serve\n"
    await h.controller.create_service(text, None)
    await h.ticks_until(lambda: bool(h.provider.ports))
    assert h.provider.ports[0] == want


async def test_the_api_carries_the_command_lines_values_on_create_and_update(
    h: Harness,
) -> None:
    """What `serve up`/`serve update --env/--secret` send reaches the replicas of each version."""
    text = "name: api\nenvs: {MODEL:}\nsecrets: {TOKEN:}\nservice: {replicas: 1}\nrun: serve\n"
    client = TestClient(TestServer(make_app(h.controller, "t", lambda: None)))
    await client.start_server()
    auth = {"Authorization": "Bearer t"}
    try:
        body = {"yaml": text, "envs": {"MODEL": "m1"}, "secrets": {"TOKEN": SECRET}}
        created = await client.post("/v1/services", json=body, headers=auth)
        assert created.status == 201, await created.text()
        await h.ticks_until(lambda: bool(h.provider.envs))
        assert h.provider.envs[0] == {"MODEL": "m1", "TOKEN": SECRET}

        body = {"yaml": text, "envs": {"MODEL": "m2"}, "secrets": {"TOKEN": "t2-" + SECRET}}
        updated = await client.put("/v1/services/api", json=body, headers=auth)
        assert updated.status == 200, await updated.text()
        await h.ticks_until(lambda: any(e.get("MODEL") == "m2" for e in h.provider.envs))
        assert {"MODEL": "m2", "TOKEN": "t2-" + SECRET} in h.provider.envs

        missing = await client.put("/v1/services/api", json={"yaml": text}, headers=auth)
        assert missing.status == 400
        assert (
            "envs.MODEL: no value given: pass --env MODEL=VALUE" in (await missing.json())["error"]
        )
        bad = await client.post("/v1/services", json={**body, "envs": ["MODEL=x"]}, headers=auth)
        assert bad.status == 400
        assert (await bad.json())["error"] == "envs: expected a mapping of names to strings"
    finally:
        await client.close()
    assert SECRET.encode() not in h.stored_bytes()


async def test_a_lost_key_is_a_one_line_logged_error_not_a_leak(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await h.controller.create_service(with_secret(SECRET), None)
    await h.ticks_until(lambda: bool(h.provider.envs))
    (h.tmp / KEY_FILE_NAME).unlink()
    caplog.set_level(logging.DEBUG)
    await h.restart()  # the new controller must decrypt from the store
    await h.controller.tick_all()

    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and all("is missing" in e and "\n" not in e for e in errors)
    assert SECRET not in caplog.text
    assert len(h.provider.envs) == 1  # nothing launched without its secrets


# ------------------------------------------------------------- end to end

APP = """\
import hashlib, json, os
from http.server import BaseHTTPRequestHandler, HTTPServer

KEY = os.environ.get("API_KEY")

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        digest = hashlib.sha256(KEY.encode()).hexdigest() if KEY is not None else None
        body = json.dumps({"sha256": digest, "pid": os.getpid()}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""

E2E_SPEC = """\
name: vault
service:
  readiness_probe:
    path: /
    initial_delay_seconds: 60
    period_seconds: 0.5
  replicas: 1
resources:
  cloud: local
envs:
  PLAIN: visible
secrets:
  API_KEY: {secret}
run: exec {python} {app}
"""


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(home, *args, log_level="DEBUG")


def ask(endpoint: str) -> dict[str, Any]:
    with urllib.request.urlopen(endpoint + "/", timeout=10) as r:
        return dict(json.loads(r.read()))


def eventually(check: Callable[[], Any], what: str, limit: float = 60.0) -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
            result = check()
            if result:
                return result
        time.sleep(0.2)
    pytest.fail(f"gave up waiting for {what}")


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(os.getpgid(pid), signal.SIGKILL)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("given", ["in the spec", "with --secret"])
def test_end_to_end_the_replica_sees_its_secret_and_no_file_or_output_holds_it(
    tmp_path: Path, skyctl_home: Path, given: str
) -> None:
    (tmp_path / "app.py").write_text(APP)
    spec = tmp_path / "vault.yaml"
    written = SECRET if given == "in the spec" else ""  # blank: filled by the flag
    spec.write_text(E2E_SPEC.format(secret=written, python=sys.executable, app=tmp_path / "app.py"))
    flags = [] if written else ["--secret", f"API_KEY={SECRET}"]
    digest = hashlib.sha256(SECRET.encode()).hexdigest()

    up = cli(skyctl_home, "serve", "up", str(spec), "--timeout", "90", *flags)
    assert up.returncode == 0, up.stdout + up.stderr
    endpoint = next(w for w in up.stdout.split() if w.startswith("http://127.0.0.1:"))
    first = ask(endpoint)
    assert first["sha256"] == digest

    # a crash of the controller and of the replica: the next controller has only
    # the store and the key file to launch the replacement from
    os.kill(json.loads((skyctl_home / "controller.json").read_text())["pid"], signal.SIGKILL)
    kill_group(first["pid"])
    restarted = cli(skyctl_home, "serve", "status", "vault")  # starts a new controller
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    second = eventually(
        lambda: (a := ask(endpoint))["pid"] != first["pid"] and a, "a replacement replica"
    )
    assert second["sha256"] == digest

    status = cli(skyctl_home, "serve", "status", "vault", "-o", "json", "--all-replicas")
    events = cli(skyctl_home, "serve", "logs", "vault", "--events")
    assert status.returncode == 0 and events.returncode == 0, status.stderr + events.stderr
    assert len(json.loads(status.stdout)[0]["replicas"]) == 2
    for output in (up, status, events):
        assert SECRET not in output.stdout + output.stderr
    files = [f for f in skyctl_home.rglob("*") if f.is_file()]
    assert {"state.db", "controller.log", KEY_FILE_NAME} <= {f.name for f in files}
    for f in files:
        assert SECRET.encode() not in f.read_bytes(), f"{f} holds the secret in clear"

    down = cli(skyctl_home, "serve", "down", "vault")
    assert down.returncode == 0, down.stdout + down.stderr
