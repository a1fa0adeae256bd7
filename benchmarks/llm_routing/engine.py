"""A simulated LLM server replica: continuous batching, chunked prefill, a prefix cache.

One :class:`Replica` behaves as vLLM does at the level routing can see:

- at most ``batch`` requests run at once; the others wait, first come first
  served;
- a request admitted looks its prompt up in the prefix cache, in blocks of
  ``BLOCK`` tokens named by the hash of the whole prefix up to the block's end
  (vLLM's automatic prefix caching): the leading blocks found are its
  ``cached_tokens`` (as ``usage.prompt_tokens_details.cached_tokens``), the
  rest must be prefilled (at least one token, as vLLM recomputes the last);
- the replica runs in steps: each step decodes one token of every running
  request and prefills up to ``prefill_budget`` prompt tokens (chunked
  prefill); it lasts ``step_base + step_per_seq x decoding + prefill tokens x
  prefill_per_token`` seconds, so prefill competes with decoding for the GPU;
- a request's first token comes at the end of the step that finishes its
  prefill (time to first token);
- the KV cache is one pool of ``cache_blocks`` blocks, as vLLM's: a running
  request holds the blocks of its prompt and answer (shared blocks once, by
  reference count; the blocks still to be computed are reserved at admission,
  and a request waits while they do not fit); a block no running request holds
  stays cached, named by its hash, until its space is needed: those go least
  recently freed first, and a finished request's blocks are freed last to
  first, so a prefix's tail goes before its head (vLLM's order). The published
  ``gpu_cache_usage_perc`` is the share held by running requests, and its
  counters as vLLM's: ``prompt_tokens_total`` (a request's whole prompt, counted
  at its first token) and ``generation_tokens_total`` (each token generated);
  its cache, ``cache_config_info``'s ``num_gpu_blocks`` x ``block_size``, is
  ``Model.cache_blocks`` x :data:`BLOCK`.

Times are virtual seconds; :mod:`benchmarks.llm_routing.run` drives replicas
from an event queue. :mod:`benchmarks.llm_routing.server` serves one over
HTTP as an OpenAI-compatible endpoint that streams its tokens.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

BLOCK = 16  # tokens per KV block (vLLM's default)


@dataclass(frozen=True)
class Model:
    """Costs of one replica (defaults: a 7-8B model on one 24-48 GB GPU)."""

    batch: int = 32  # running requests at most
    prefill_budget: int = 512  # prompt tokens prefilled per step
    prefill_per_token: float = 0.0002  # s: 5,000 prompt tokens/s
    step_base: float = 0.015  # s per decode step
    step_per_seq: float = 0.0003  # s per running request per step
    # 32,768 tokens of KV cache, running requests' and cached prefixes' together: a
    # 24 GB GPU (L4, A10G) after an 8B model's 16 GB of weights (128 KiB a token)
    cache_blocks: int = 2048

    def seconds_per_request(self, prompt_tokens: float, output_tokens: float) -> float:
        """GPU seconds one request costs at a full batch with nothing cached
        (its prefill, and its share of the decode steps): 1 / capacity."""
        step = self.step_base + self.step_per_seq * self.batch
        return prompt_tokens * self.prefill_per_token + output_tokens * step / self.batch


def block_hashes(tokens: list[int]) -> list[int]:
    """The hash of each full block of ``tokens``, chained over the prefix."""
    out: list[int] = []
    prev = 0
    for start in range(0, len(tokens) - BLOCK + 1, BLOCK):
        prev = hash((prev, *tokens[start : start + BLOCK]))
        out.append(prev)
    return out


@dataclass(eq=False)
class Job:
    """One request on a replica."""

    tokens: list[int]  # the prompt, ending with the assistant's turn marker
    answer: list[int]  # the tokens it will generate (the workload decides them)
    arrived: float  # when the client sent it (the router adds nothing)
    owner: object = None  # the caller's handle (the run's Request)
    cached: int = 0
    remaining: int = 0  # prompt tokens still to prefill
    taking: int = 0  # prefilled in the current step
    left: int = 0  # tokens still to decode
    first_token: float | None = None
    done: float | None = None
    blocks: list[int] = field(default_factory=list)  # hashes of the prompt's full blocks
    hit: int = 0  # leading blocks found cached
    reusable: int = 0  # leading prompt tokens any replica had computed before (the ceiling)
    held: list[int] = field(default_factory=list)  # hashed blocks it holds in the pool
    reserved: int = 0  # blocks it holds not (yet) named by a hash


class Replica:
    """One simulated server (see the module docstring).

    ``seen``: a set shared by the replicas of a run, of every block any of them
    computed: a prompt's leading blocks in it are what an unbounded cache
    shared by all replicas would hold (``Job.reusable``, the best any routing
    could do).
    """

    def __init__(self, replica_id: int, model: Model, seen: set[int] | None = None) -> None:
        self.replica_id = replica_id
        self.model = model
        self.cache: OrderedDict[int, None] = OrderedDict()  # cached, held by none: evictable
        self.used: dict[int, int] = {}  # block -> running requests holding it
        self.private = 0  # blocks held not (yet) named by a hash
        self.seen = set() if seen is None else seen
        self.waiting: deque[Job] = deque()
        self.prefilling: list[Job] = []
        self.decoding: list[Job] = []
        self.step_end: float | None = None  # the running step ends then; None: idle
        self.alive = True
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self.prompt_tokens_total = 0  # vLLM's counters (published; see the module docstring)
        self.generation_tokens_total = 0

    @property
    def running(self) -> int:
        return len(self.prefilling) + len(self.decoding)

    @property
    def kv_usage(self) -> float:
        """Share of the pool held by running requests (vLLM's gpu_cache_usage_perc)."""
        return (len(self.used) + self.private) / self.model.cache_blocks

    def submit(self, job: Job, now: float) -> None:
        self.waiting.append(job)
        if self.step_end is None:
            self._start_step(now)

    def _admit(self, job: Job) -> bool:
        """Look ``job``'s prompt up and take its blocks; False (nothing taken) if they
        do not fit beside the running requests' (unless none is running)."""
        if not job.blocks:
            job.blocks = block_hashes(job.tokens)
        cache, used = self.cache, self.used
        hit = 0
        for block in job.blocks:
            if block not in cache and block not in used:
                break
            hit += 1
        total = -(-(len(job.tokens) + len(job.answer)) // BLOCK)
        fresh = sum(1 for block in job.blocks[:hit] if block not in used)
        held = len(used) + fresh + self.private + total - hit  # the pool's held blocks after
        if self.running and held > self.model.cache_blocks:
            return False
        for block in job.blocks[:hit]:
            if block in cache:
                del cache[block]
            used[block] = used.get(block, 0) + 1
        job.held = job.blocks[:hit]
        job.reserved = total - hit
        self.private += job.reserved
        self._evict()
        job.hit = hit
        job.cached = min(hit * BLOCK, len(job.tokens) - 1)
        job.remaining = len(job.tokens) - job.cached
        seen = 0
        for block in job.blocks:
            if block not in self.seen:
                break
            seen += 1
        job.reusable = min(seen * BLOCK, len(job.tokens) - 1)
        self.prompt_tokens += len(job.tokens)
        self.cached_tokens += job.cached
        return True

    def _evict(self) -> None:
        cache = self.cache
        while cache and len(cache) + len(self.used) + self.private > self.model.cache_blocks:
            cache.popitem(last=False)

    def _prefilled(self, job: Job) -> None:
        """``job``'s prompt blocks are computed: named by their hashes now."""
        cache, used = self.cache, self.used
        for block in job.blocks[job.hit :]:
            if block in cache:  # computed meanwhile by another request, since finished
                del cache[block]
            used[block] = used.get(block, 0) + 1
            job.held.append(block)
            self.seen.add(block)
        named = len(job.blocks) - job.hit
        job.reserved -= named
        self.private -= named

    def _release(self, job: Job) -> None:
        """``job`` finished: its answer's full blocks are named, and all its blocks
        freed last to first (cached, the tail evicted first)."""
        answer = block_hashes(job.tokens + job.answer)[len(job.blocks) :]
        self.private -= job.reserved
        job.reserved = 0
        cache, used = self.cache, self.used
        for block in reversed(answer):
            self.seen.add(block)
            if block in used:
                continue
            cache[block] = None
            cache.move_to_end(block)
        for block in reversed(job.held):
            count = used[block] - 1
            if count:
                used[block] = count
            else:
                del used[block]
                cache[block] = None
        job.held = []
        self._evict()

    def _start_step(self, now: float) -> None:
        model = self.model
        while self.waiting and self.running < model.batch and self._admit(self.waiting[0]):
            self.prefilling.append(self.waiting.popleft())
        if not self.prefilling and not self.decoding:
            self.step_end = None
            return
        budget = model.prefill_budget
        tokens = 0
        for job in self.prefilling:
            job.taking = min(job.remaining, budget - tokens)
            tokens += job.taking
            if tokens >= budget:
                break
        duration = (
            model.step_base + model.step_per_seq * self.running + tokens * model.prefill_per_token
        )
        self.step_end = now + duration

    def end_step(self, now: float) -> tuple[list[Job], list[Job]]:
        """The step ending at ``now``: (jobs that got their first token, jobs finished);
        the next step starts at once if there is work."""
        first: list[Job] = []
        finished: list[Job] = []
        still: list[Job] = []
        self.generation_tokens_total += len(self.decoding)
        for job in self.decoding:
            job.left -= 1
            if job.left <= 0:
                job.done = now
                finished.append(job)
            else:
                still.append(job)
        prefilling: list[Job] = []
        for job in self.prefilling:
            job.remaining -= job.taking
            job.taking = 0
            if job.remaining > 0:
                prefilling.append(job)
                continue
            job.first_token = now
            first.append(job)
            self.prompt_tokens_total += len(job.tokens)
            self.generation_tokens_total += 1
            self._prefilled(job)
            job.left = len(job.answer) - 1
            if job.left <= 0:
                job.done = now
                finished.append(job)
            else:
                still.append(job)
        for job in finished:
            self._release(job)
        self.decoding = still
        self.prefilling = prefilling
        self._start_step(now)
        return first, finished

    def preempt(self) -> list[Job]:
        """The replica is gone: every job it held, for the caller to send elsewhere."""
        self.alive = False
        jobs = list(self.waiting) + self.prefilling + self.decoding
        self.waiting.clear()
        self.prefilling, self.decoding = [], []
        self.step_end = None
        self.cache.clear()
        self.used.clear()
        self.private = 0
        for job in jobs:
            job.held, job.reserved, job.hit = [], 0, 0
        return jobs
