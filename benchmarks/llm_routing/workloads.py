"""Workloads for the LLM routing benchmark: conversations of token messages.

- ``chat``: multi-turn chats, each turn resending the whole history, with the
  shape reported for LMSYS-Chat-1M (Zheng et al., 2023): 2.0 turns per
  conversation on average, prompts of 69.5 tokens and answers of 214.5 on
  average (heavy-tailed: log-normal lengths with those means), no system
  prompt.
- ``agents``: the same chats behind a few long shared system prompts (eight
  agents or few-shot templates of 1,000 to 3,000 tokens, picked with Zipf
  weights), as agent frameworks and few-shot services send.
- ``fewshot``: single requests behind many long few-shot templates (24 of
  2,000 to 4,000 tokens, Zipf weights; 72,000 tokens in all, more than one
  replica's cache), a short question and a short answer (50 tokens).
- ``control``: single requests sharing nothing (prompts of 500 tokens on
  average): no routing can find a cached prefix.

Token ids are random; a message's text is its ids as words (what the router
hashes). Conversations arrive open-loop (Poisson); a conversation's next turn
is sent a think time (exponential, 3 s mean) after its previous answer ends.
"""

from __future__ import annotations

import array
import functools
import json
import math
import random
from dataclasses import dataclass, field

from benchmarks.llm_routing.engine import Model

WORKLOADS = ("chat", "agents", "fewshot", "control")
ROLE_TOKENS = {"system": 1, "user": 2, "assistant": 3}
MODEL_NAME = "sim-8b"
THINK_SECONDS = 3.0


@dataclass(eq=False)
class Message:
    role: str
    tokens: list[int]

    @property
    def text(self) -> str:
        return " ".join(map(str, self.tokens))


@dataclass(eq=False)
class Conversation:
    """A chat: an optional system prompt, then (question, answer) turns."""

    system: Message | None
    turns: list[tuple[Message, Message]]
    start: float = 0.0
    sent: int = field(default=0)  # turns sent so far
    thinks: list[float] = field(default_factory=list)  # seconds before each later turn

    def prompt(self, turn: int) -> list[int]:
        """The tokens of turn ``turn``'s prompt: the history, the question, the
        assistant's marker (so prompt + answer is a prefix of the next prompt)."""
        out: list[int] = []
        if self.system is not None:
            out += [ROLE_TOKENS["system"], *self.system.tokens]
        for n in range(turn + 1):
            question, answer = self.turns[n]
            out += [ROLE_TOKENS["user"], *question.tokens, ROLE_TOKENS["assistant"]]
            if n < turn:
                out += answer.tokens
        return out

    def body(self, turn: int) -> bytes:
        """The OpenAI chat request of turn ``turn``, as a client sends it."""
        messages = [] if self.system is None else [self.system]
        for n in range(turn + 1):
            messages.append(self.turns[n][0])
            if n < turn:
                messages.append(self.turns[n][1])
        doc = {
            "model": MODEL_NAME,
            "messages": [{"role": m.role, "content": m.text} for m in messages],
            "stream": True,
        }
        return json.dumps(doc).encode()


def _lognormal(rng: random.Random, mean: float, sigma: float, cap: int) -> int:
    mu = math.log(mean) - sigma * sigma / 2.0
    return max(1, min(cap, round(rng.lognormvariate(mu, sigma))))


def _tokens(rng: random.Random, count: int) -> list[int]:
    ids = array.array("H", rng.randbytes(2 * count))  # ids from 10: below are role markers
    return [10 + t for t in ids]


class Generator:
    """Conversations of one workload, reproducible from a seed."""

    def __init__(self, workload: str, seed: int) -> None:
        if workload not in WORKLOADS:
            raise ValueError(f"unknown workload {workload!r} (known: {', '.join(WORKLOADS)})")
        self.workload = workload
        self.rng = random.Random(seed)
        shared = random.Random(7)  # the agents' prompts: the same in every run
        self.systems = [
            Message("system", _tokens(shared, shared.randrange(1000, 3001))) for _ in range(8)
        ]
        self.weights = [1.0 / (rank + 1) for rank in range(len(self.systems))]
        self.templates = [
            Message("system", _tokens(shared, shared.randrange(2000, 4001))) for _ in range(24)
        ]
        self.template_weights = [1.0 / (rank + 1) for rank in range(len(self.templates))]

    def conversation(self) -> Conversation:
        rng = self.rng
        if self.workload == "control":
            question = Message("user", _tokens(rng, _lognormal(rng, 500.0, 0.6, 4000)))
            answer = Message("assistant", _tokens(rng, _lognormal(rng, 214.5, 0.8, 1024)))
            return Conversation(None, [(question, answer)])
        if self.workload == "fewshot":
            template = rng.choices(self.templates, self.template_weights)[0]
            question = Message("user", _tokens(rng, _lognormal(rng, 69.5, 1.0, 2000)))
            answer = Message("assistant", _tokens(rng, _lognormal(rng, 50.0, 0.5, 256)))
            return Conversation(template, [(question, answer)])
        system = None
        if self.workload == "agents":
            system = rng.choices(self.systems, self.weights)[0]
        turns = 1
        while turns < 10 and rng.random() < 0.5:  # geometric: 2 turns on average
            turns += 1
        pairs = [
            (
                Message("user", _tokens(rng, _lognormal(rng, 69.5, 1.0, 2000))),
                Message("assistant", _tokens(rng, _lognormal(rng, 214.5, 0.8, 1024))),
            )
            for _ in range(turns)
        ]
        return Conversation(system, pairs)


@functools.lru_cache(maxsize=32)
def mean_cost(workload: str, model: Model, samples: int = 1500) -> tuple[float, float]:
    """(GPU seconds per request with nothing cached, requests per conversation),
    from a fixed sample: capacity of one replica is 1 / the first."""
    gen = Generator(workload, seed=999_983)
    seconds = 0.0
    requests = 0
    for _ in range(samples):
        conv = gen.conversation()
        for turn in range(len(conv.turns)):
            prompt = len(conv.prompt(turn))
            seconds += model.seconds_per_request(prompt, len(conv.turns[turn][1].tokens))
            requests += 1
    return seconds / requests, requests / samples
