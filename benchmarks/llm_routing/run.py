"""One simulated run: conversations, a router policy, replicas; and its figures.

Virtual time, an event queue: conversations arrive (Poisson, open loop); each
turn's request is routed from its JSON body (:func:`policies.cache_aware.
prompt_bytes` and ``block_keys``, as the router reads it), the router's
in-flight counts and the first tokens it sees stream back; replicas
(:mod:`benchmarks.llm_routing.engine`) run their steps. Halfway through, one
replica is preempted: its requests are sent again elsewhere (as the router
retries them) and its cache is lost; a fresh replica joins 60 s later. The
steady-state figures count the requests sent between the warm-up and the
preemption; the minute after it is reported apart.

The hit rate's recovery is read against a paired counterfactual: the same
seed run again without the preemption (the same conversations, sent at the
same times, each later turn the same think time after its previous answer),
and the recovery is the time after the preemption from which every 10 s
window's cached share, until the replacement joins, stays within 90% of the
same window's in that run (:func:`recovery_paired`; the benchmark's table
pools the seeds' windows first, :func:`pooled`). The reading before it, the
end of the first window back at 90% of the minute before's rate
(:func:`recovery_before`), is kept beside it: with no preemption at all it
read 20 s at 1 or 2 of 32 instants tried (chat, 70%, tuning seeds 1 and 2),
as a window of about 100 requests with a few long first prompts falls under
90% of the minute before by chance (docs/router.md).
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from benchmarks.llm_routing.engine import BLOCK, Job, Model, Replica
from benchmarks.llm_routing.routers import POLL_SECONDS, make
from benchmarks.llm_routing.workloads import THINK_SECONDS, Conversation, Generator, mean_cost
from policies import cache_aware as ca

WINDOW = 10.0  # seconds per bucket of the hit-rate timeline
BACK = 0.9  # a window's cached share is back at 90% of the one it is compared to
REPLACEMENT = 60.0  # seconds after the preemption a fresh replica joins
NEVER = math.inf  # a recovery not seen: the hit rate was still short at the horizon
CHAT = "/v1/chat/completions"


@dataclass
class Config:
    workload: str
    policy: str
    replicas: int = 4
    load: float = 0.7  # share of the replicas' capacity with nothing cached
    seed: int = 1
    duration: float = 300.0  # virtual seconds of arrivals
    warmup: float = 30.0  # requests sent before this are not measured
    preempt: bool = True
    model: Model = field(default_factory=Model)
    until: float | None = None  # stop the simulation at this virtual time (None: run it out)
    paired: bool = True  # with the preemption, run the same seed without it to read the recovery
    # the replica the preemption takes is never there (the fresh one still joins): the
    # steady state of the replicas left, the second run a recovery is read against
    absent: bool = False


@dataclass
class Result:
    config: Config
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    reusable_tokens: int = 0  # what an unbounded cache shared by all replicas would hold
    ttfts: list[float] = field(default_factory=list)
    after: list[float] = field(default_factory=list)  # TTFTs in the minute after the preemption
    balance: float = 0.0  # max / mean of each replica's time-averaged in-flight count
    # seconds after the preemption from which the hit rate stays back (recovery_paired)
    recovery: float | None = None
    recovery_before: float | None = None  # the first window back at 90% of the minute before
    # the same seed's windows without the preemption (paired runs only): window -> [cached, prompt]
    unpreempted: dict[int, list[int]] = field(default_factory=dict)
    timeline: dict[int, list[int]] = field(default_factory=dict)  # window -> [cached, prompt]

    @property
    def cached_share(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    @property
    def mean_ttft(self) -> float:
        return sum(self.ttfts) / len(self.ttfts) if self.ttfts else 0.0

    def ttft_percentile(self, q: float) -> float:
        ordered = sorted(self.ttfts)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(q / 100.0 * len(ordered)))]


@dataclass(eq=False)
class Request:
    conv: Conversation
    turn: int
    sent: float
    keys: list[int]
    size: int
    prompt: ca.Prefix = ca.NONE  # its keys with its chat turns', as the router reads them
    replica: int = -1
    ticket: ca.Ticket = field(default_factory=ca.Ticket)  # its prefill, pending at the router
    answered: bool = False  # its first token came (a retry after a preemption counts once)


def run(config: Config) -> Result:
    """Simulate ``config`` to the end of its last request; deterministic per seed."""
    model = config.model
    cost, turns = mean_cost(config.workload, model)
    conv_rate = config.load * config.replicas / cost / turns
    gen = Generator(config.workload, config.seed)
    arrivals = random.Random(config.seed * 7919 + 1)
    think = random.Random(config.seed * 104_729 + 2)
    router = make(config.policy)
    seen: set[int] = set()  # every block computed anywhere (the ceiling of any routing)
    replicas = {i: Replica(i, model, seen) for i in range(config.replicas)}
    alive = sorted(replicas)
    load = dict.fromkeys(replicas, 0)
    result = Result(config)
    events: list[tuple[float, int, str, object]] = []
    seq = 0

    def push(at: float, kind: str, payload: object) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (at, seq, kind, payload))

    def dispatch(req: Request, now: float) -> None:
        rid = router.choose(req.keys, req.size, alive, load, now, req.ticket, req.prompt)
        req.replica = rid
        load[rid] += 1
        replica = replicas[rid]
        idle = replica.step_end is None
        prompt = req.conv.prompt(req.turn)
        replica.submit(Job(prompt, req.conv.turns[req.turn][1].tokens, req.sent, req), now)
        if idle and replica.step_end is not None:
            push(replica.step_end, "step", replica)

    def send(conv: Conversation, now: float) -> None:
        turn = conv.sent
        conv.sent += 1
        body = conv.body(turn)
        data = ca.prompt_bytes(CHAT, body) or b""
        prompt = ca.prefix(CHAT, body) or ca.NONE
        dispatch(Request(conv, turn, now, prompt.keys, len(data), prompt=prompt), now)

    at = arrivals.expovariate(conv_rate)
    while at < config.duration:
        conv = gen.conversation()
        conv.start = at
        # each later turn's think time, drawn here in arrival order: a run with and one
        # without the preemption send every turn the same time after its previous answer
        conv.thinks = [think.expovariate(1.0 / THINK_SECONDS) for _ in conv.turns[1:]]
        push(at, "start", conv)
        at += arrivals.expovariate(conv_rate)
    half = config.duration / 2.0
    if config.preempt:
        push(half, "preempt", 0)
    if config.absent:
        alive.remove(0)  # the one the preemption takes (alive[0])
        del load[0]
    if config.preempt or config.absent:
        push(half + REPLACEMENT, "join", config.replicas)
    if router.polls:  # it reads what the replicas publish, from the start, every period
        push(0.0, "poll", None)
    area = dict.fromkeys(alive, 0.0)  # in-flight x seconds, warm-up to the preemption
    last = config.warmup

    while events:
        now, _, kind, payload = heapq.heappop(events)
        if config.until is not None and now > config.until:
            break
        if config.warmup <= now <= half:
            for rid in alive:
                area[rid] += load[rid] * (now - last)
            last = now
        if kind == "start":
            assert isinstance(payload, Conversation)
            send(payload, now)
        elif kind == "next":
            assert isinstance(payload, Conversation)
            send(payload, now)
        elif kind == "step":
            assert isinstance(payload, Replica)
            replica = payload
            if not replica.alive or replica.step_end != now:
                continue  # a stale event
            first, finished = replica.end_step(now)
            for job in first:
                req = job.owner
                assert isinstance(req, Request)
                router.answered(req.ticket)  # the router sees the first bytes stream back
                answered, req.answered = req.answered, True
                if answered:  # retried after the preemption had streamed tokens: counted
                    pass
                elif req.sent >= half and (req.sent < half + 60.0 or not config.preempt):
                    result.after.append(now - req.sent)
                elif config.warmup <= req.sent < half:  # the steady state
                    result.requests += 1
                    result.prompt_tokens += len(job.tokens)
                    result.cached_tokens += job.cached
                    result.reusable_tokens += job.reusable
                    result.ttfts.append(now - req.sent)
                window = result.timeline.setdefault(int(now // WINDOW), [0, 0])
                window[0] += job.cached
                window[1] += len(job.tokens)
            for job in finished:
                req = job.owner
                assert isinstance(req, Request)
                load[req.replica] -= 1
                conv = req.conv
                if conv.sent < len(conv.turns):
                    push(now + conv.thinks[conv.sent - 1], "next", conv)
            if replica.step_end is not None:
                push(replica.step_end, "step", replica)
        elif kind == "preempt":
            rid = alive[int(payload) % len(alive)]  # type: ignore[call-overload]
            alive.remove(rid)
            router.leave(rid)
            orphans = replicas[rid].preempt()
            load[rid] = 0
            for job in orphans:  # the router retries them elsewhere, from scratch
                req = job.owner
                assert isinstance(req, Request)
                dispatch(req, now)
        elif kind == "poll":
            for rid in alive:
                replica = replicas[rid]
                router.observe(rid, model.cache_blocks * BLOCK, replica.prompt_tokens_total)
            if events:  # (none left: the run is over)
                push(now + POLL_SECONDS, "poll", None)
        elif kind == "join":
            rid = int(payload)  # type: ignore[call-overload]
            replicas[rid] = Replica(rid, model, seen)
            load[rid] = 0
            alive.append(rid)
    span = max(1e-9, half - config.warmup)
    means = [area[rid] / span for rid in area]
    mean = sum(means) / len(means)
    result.balance = max(means) / mean if mean else 0.0
    if config.preempt:
        result.recovery_before = recovery_before(result.timeline, half)
        if config.paired and any(c for c, _ in result.timeline.values()):
            unpreempted = replace(config, preempt=False, paired=False, until=config.duration)
            result.unpreempted = run(unpreempted).timeline
            result.recovery = recovery_paired(
                result.timeline, result.unpreempted, half, half + REPLACEMENT
            )
    return result


def recovery_paired(
    preempted: dict[int, list[int]],
    unpreempted: dict[int, list[int]],
    at: float,
    end: float,
) -> float | None:
    """Seconds after the preemption at ``at`` from which the cached share of every
    window of ``preempted`` (window -> [cached, prompt] tokens, windows of
    :data:`WINDOW` s by first token) up to ``end`` stays at least :data:`BACK` of
    the same window's in ``unpreempted`` (the same run without the preemption): the
    end of the last window under it, 0 if none is. :data:`NEVER` if the last window
    is still under it; None if no window of ``unpreempted`` has cached tokens to
    compare with (nothing to recover). A window without prompt tokens in either run
    is skipped.

    ``end``: the replacement's join in the benchmark. After it a fresh replica with
    an empty cache takes its share of new prefixes, a second event with a cost of
    its own (agents, tuning seeds 1 and 2: one window at 0.88 to 0.91 of the run
    without either), which is not the preemption's.
    """
    first = int(at // WINDOW)
    recovered = 0.0
    compared = under = False
    for window in range(first, int(end // WINDOW)):
        cached, prompt = preempted.get(window, [0, 0])
        base_cached, base_prompt = unpreempted.get(window, [0, 0])
        if not prompt or not base_prompt or not base_cached:
            continue
        compared = True
        under = cached / prompt < BACK * base_cached / base_prompt
        if under:
            recovered = max(0.0, (window + 1) * WINDOW - at)
    if not compared:
        return None
    return NEVER if under else recovered


def pooled(timelines: Sequence[dict[int, list[int]]]) -> dict[int, list[int]]:
    """Timelines of several seeds summed window by window."""
    out: dict[int, list[int]] = {}
    for timeline in timelines:
        for window, (cached, prompt) in timeline.items():
            total = out.setdefault(window, [0, 0])
            total[0] += cached
            total[1] += prompt
    return out


def recovery_before(timeline: dict[int, list[int]], half: float) -> float | None:
    """Seconds after the preemption at ``half`` until the end of the first window
    whose hit rate is back to 90% of the minute before it, :data:`NEVER` if none is,
    None if the minute before cached nothing (the reading before
    :func:`recovery_paired`: noisy, see the module docstring)."""
    before = [
        timeline.get(w, [0, 0]) for w in range(int((half - 60) // WINDOW), int(half // WINDOW))
    ]
    cached = sum(c for c, _ in before)
    prompt = sum(p for _, p in before)
    if not prompt or not cached:
        return None
    baseline = cached / prompt
    window = int(half // WINDOW)
    last = max(timeline) if timeline else window
    while window <= last:
        c, p = timeline.get(window, [0, 0])
        if p and c / p >= BACK * baseline and window * WINDOW >= half:
            return max(0.0, (window + 1) * WINDOW - half)
        window += 1
    return NEVER
