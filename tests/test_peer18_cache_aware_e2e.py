"""cache_aware end to end on the local provider, through the real CLI, controller and
router, with the benchmark's simulated vLLM servers as replicas: a chat's next turn
finds its history cached (``usage.prompt_tokens_details.cached_tokens``, as vLLM
reports it) while the router polls the replicas' published load, the router counts
the hits, and ``serve down`` leaves nothing behind."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import run_cli
from tests.helpers.processes import pids_mentioning
from tests.helpers.waiting import wait_until

SPEC = """\
name: llm
service:
  readiness_probe: /health
  replicas: 3
  load_balancing_policy: cache_aware
  router:
    cache_aware:
      replica_metrics_seconds: 0.5
resources:
  cloud: local
envs:
  PYTHONPATH: {root}  # benchmarks/ is the repository's, not an installed package
run: exec {python} -m benchmarks.llm_routing.server --port $PORT --time-scale 0.001
"""
ROOT = Path(__file__).resolve().parent.parent


def chat(endpoint: str, messages: list[dict[str, str]]) -> dict[str, Any]:
    doc = {"model": "sim", "messages": messages, "max_tokens": 8}
    request = urllib.request.Request(
        endpoint + "/v1/chat/completions",
        data=json.dumps(doc).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return dict(json.loads(resp.read()))


def ready(endpoint: str) -> int:
    """Replicas the router routes to (its own health endpoint)."""
    with urllib.request.urlopen(endpoint + "/-/skyctl/health", timeout=10) as resp:
        return int(json.loads(resp.read())["ready_replicas"])


@pytest.mark.timeout(180)
def test_a_chats_next_turn_finds_its_history_cached_through_the_whole_product(
    tmp_path: Path, skyctl_home: Path
) -> None:
    spec = tmp_path / "llm.yaml"
    spec.write_text(SPEC.format(python=sys.executable, root=ROOT))
    up = run_cli(skyctl_home, "serve", "up", str(spec), "--timeout", "90")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        endpoint = next(w for w in up.stdout.split() if w.startswith("http://127.0.0.1:"))
        assert wait_until(lambda: ready(endpoint) == 3, 60), "three replicas ready"
        for conversation in range(6):
            question = " ".join(str(1000 * conversation + n) for n in range(60))
            messages = [{"role": "user", "content": question}]
            first = chat(endpoint, messages)
            answer = first["choices"][0]["message"]["content"]
            messages += [
                {"role": "assistant", "content": answer},
                {"role": "user", "content": "and then?"},
            ]
            second = chat(endpoint, messages)["usage"]
            resent = first["usage"]["prompt_tokens"] + 8  # the first prompt and its answer
            assert second["prompt_tokens_details"]["cached_tokens"] == resent // 16 * 16
        with urllib.request.urlopen(endpoint + "/metrics", timeout=10) as resp:
            page = resp.read().decode()
        hits = [
            line
            for line in page.splitlines()
            if line.startswith("skyctl_router_cache_aware_requests_total")
            and 'outcome="hit"' in line
        ]
        assert hits and float(hits[0].rsplit(" ", 1)[1]) == 6.0, hits
        served = [  # new chats spread over the replicas; each one's two turns on one
            float(line.rsplit(" ", 1)[1])
            for line in page.splitlines()
            if line.startswith("skyctl_router_replica_requests_total{")
        ]
        assert len(served) == 3 and all(n > 0 and n % 2 == 0 for n in served), served
    finally:
        down = run_cli(skyctl_home, "serve", "down", "--all", "--yes")
        assert down.returncode == 0, down.stdout + down.stderr
        assert wait_until(lambda: not pids_mentioning(str(skyctl_home)), 30)
