"""What the replicas publish themselves (vLLM's ``/metrics``), polled off the request path.

For ``cache_aware``, a :class:`ReplicaLoad` task fetches every routable replica's
``/metrics`` once per period (``replica_metrics_seconds``, else every
:data:`skyctl.router.affinity.CAPACITY_POLL_SECONDS` unless
``replica_cache_bytes`` is set; all at once, each bounded by a timeout) and
keeps, per replica, a :class:`Sample` of vLLM's figures:

- load: ``vllm:num_requests_running`` + ``vllm:num_requests_waiting`` (summed
  over their label sets) and the KV-cache usage, ``vllm:kv_cache_usage_perc``
  (``vllm:gpu_cache_usage_perc`` before vLLM 0.10). With
  ``replica_metrics_seconds`` set, the router's ranking takes as a replica's
  load the larger of its own in-flight count and the published running +
  waiting requests (which include other routers' and clients' work), while the
  sample is younger than three periods; a replica whose fresh KV-cache usage is
  at or over :data:`policies.cache_aware.KV_FULL` counts as over the load bound.
- its cache: ``vllm:cache_config_info``'s ``num_gpu_blocks`` x ``block_size``
  labels (tokens; summed over its engines), and the prompt tokens that went
  through it, ``vllm:prompt_tokens_total``: each sample is handed to
  ``on_sample`` (the index learns the replica's bound from them:
  :class:`policies.cache_aware.Capacity`).

A replica that does not answer, answers an error or publishes none of these simply
has no sample: its in-flight count is used, as without polling, and its index has
no bound; so does a figure that is not a finite number. A page is read whole (up to
:data:`MAX_BYTES`; a larger one is ignored), and only its lines of these metrics
are parsed (prometheus_client's text parser): a vLLM page is mostly histograms,
which would cost the router's loop milliseconds per replica and round.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
from collections.abc import Callable, Sequence

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from skyctl.clock import Clock

log = logging.getLogger(__name__)

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_USAGE = "vllm:kv_cache_usage_perc"  # vLLM 0.10 and later
GPU_KV_USAGE = "vllm:gpu_cache_usage_perc"  # the same, before vLLM 0.10
CACHE_INFO = "vllm:cache_config_info"  # an info gauge: num_gpu_blocks, block_size labels
PROMPT_TOKENS = "vllm:prompt_tokens_total"  # a counter: prompt tokens through the cache
MAX_BYTES = 1 << 20  # a metrics page larger than this is ignored
_NAMES = (RUNNING, WAITING, KV_USAGE, GPU_KV_USAGE, CACHE_INFO, PROMPT_TOKENS)
_LINES = tuple(name.encode() for name in _NAMES)


class Sample:
    __slots__ = ("at", "cache_tokens", "kv_usage", "prompt_tokens", "queued")

    def __init__(
        self,
        queued: float | None,
        kv_usage: float | None,
        at: float,
        cache_tokens: float | None = None,
        prompt_tokens: float | None = None,
    ) -> None:
        self.queued = queued  # running + waiting requests (None: not published)
        self.kv_usage = kv_usage
        self.at = at
        self.cache_tokens = cache_tokens  # the KV cache in tokens
        self.prompt_tokens = prompt_tokens  # prompt tokens since the server started


def _cache_tokens(labels: list[dict[str, str]]) -> float | None:
    """Tokens of KV cache in ``cache_config_info``'s label sets (one per engine);
    None when none names a positive ``num_gpu_blocks`` and ``block_size``."""
    total = 0
    for got in labels:
        blocks, size = got.get("num_gpu_blocks", ""), got.get("block_size", "")
        if blocks.isdigit() and size.isdigit() and len(blocks) + len(size) < 30:
            total += int(blocks) * int(size)
    return float(total) if total > 0 else None


def parse(text: str | bytes, at: float) -> Sample | None:
    """A sample from a Prometheus text page; None when it has none of the figures read.

    Only the lines of the metrics read here are parsed; a value that is not a finite
    number counts as absent (a ValueError for a line the parser refuses)."""
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    wanted = b"".join(line + b"\n" for line in data.splitlines() if line.startswith(_LINES))
    values: dict[str, list[float]] = {}
    info: list[dict[str, str]] = []
    for family in text_string_to_metric_families(wanted.decode("utf-8", "replace")):
        if family.name == CACHE_INFO:
            info.extend(s.labels for s in family.samples)
        elif family.name in _NAMES:  # (untyped: a family per line)
            values.setdefault(family.name, []).extend(s.value for s in family.samples)
    found = {name: sum(got) for name, got in values.items() if all(math.isfinite(v) for v in got)}
    found = {name: value for name, value in found.items() if math.isfinite(value)}
    queued: float | None = None
    if RUNNING in found or WAITING in found:
        queued = found.get(RUNNING, 0.0) + found.get(WAITING, 0.0)
        queued = queued if math.isfinite(queued) else None
    prompts = found.get(PROMPT_TOKENS)
    cache = _cache_tokens(info)
    if queued is None and cache is None and prompts is None:
        return None
    return Sample(queued, found.get(KV_USAGE, found.get(GPU_KV_USAGE)), at, cache, prompts)


class ReplicaLoad:
    """Polls the replicas' metrics (see the module docstring)."""

    def __init__(
        self,
        period: float,
        clock: Clock,
        targets: Callable[[], Sequence[tuple[int, str]]],
        path: str = "/metrics",
        ssl_context: ssl.SSLContext | None = None,
        on_sample: Callable[[int, Sample], None] | None = None,
        delay: float = 0.0,
    ) -> None:
        """``targets``: the routable replicas as (replica id, base URL), asked each round;
        ``ssl_context``: how https replicas are verified (the router's, from
        ``router.replica_ca_file``; None: the system's CAs); ``on_sample``: called
        with each new sample (replica id, sample); ``delay``: seconds before the first round."""
        self.period = period
        self._delay = delay
        self._on_sample = on_sample
        self._ssl = ssl_context
        self.samples: dict[int, Sample] = {}
        self._clock = clock
        self._targets = targets
        self._path = path
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def cancel(self) -> None:
        """Stop polling without waiting for the task to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        task = self._task
        self.cancel()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    def _fresh(self, replica_id: int) -> Sample | None:
        sample = self.samples.get(replica_id)
        if sample is None or self._clock.now() - sample.at > 3.0 * self.period:
            return None
        return sample

    def load(self, replica_id: int, in_flight: float) -> float:
        """The replica's load: the larger of ``in_flight`` and a fresh published one."""
        sample = self._fresh(replica_id)
        if sample is None or sample.queued is None:
            return in_flight
        return max(in_flight, sample.queued)

    def kv_usage(self, replica_id: int) -> float | None:
        """The replica's fresh KV-cache usage (0 to 1); None when it publishes none."""
        sample = self._fresh(replica_id)
        return None if sample is None else sample.kv_usage

    async def _run(self) -> None:
        if self._delay > 0:
            await self._clock.sleep(self._delay)
        timeout = aiohttp.ClientTimeout(total=max(0.1, min(2.0, self.period)))
        connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            while True:
                targets = list(self._targets())
                current = {rid for rid, _ in targets}
                for rid in [r for r in self.samples if r not in current]:
                    del self.samples[rid]
                polls = (self._poll(session, rid, url) for rid, url in targets)
                for failed in await asyncio.gather(*polls, return_exceptions=True):
                    if failed is not None:  # our bug: logged, and the polling goes on
                        log.error("replica metrics: %r", failed)
                self.rounds += 1
                await self._clock.sleep(self.period)

    async def _poll(self, session: aiohttp.ClientSession, replica_id: int, url: str) -> None:
        try:
            async with session.get(url + self._path) as resp:
                if resp.status != 200:
                    return
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_any():  # read(n) returns what came first
                    size += len(chunk)
                    if size > MAX_BYTES:
                        return
                    chunks.append(chunk)
            sample = parse(b"".join(chunks), self._clock.now())
        except (TimeoutError, aiohttp.ClientError, ValueError, OSError) as exc:
            log.debug("replica %d metrics: %s", replica_id, exc)
            return
        if sample is not None:
            self.samples[replica_id] = sample
            if self._on_sample is not None:
                self._on_sample(replica_id, sample)
