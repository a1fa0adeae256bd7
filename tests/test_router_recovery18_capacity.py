"""cache_aware learns each replica's cache from what the replica publishes (vLLM's
``vllm:cache_config_info`` and ``vllm:prompt_tokens_total``), so the index stops naming a
replica for prefixes its server evicted with no setting; a replica publishing none keeps
no bound; ``replica_cache_bytes`` wins over what is learned. In-process, no sockets."""

from __future__ import annotations

from benchmarks.llm_routing.engine import BLOCK, Model
from benchmarks.llm_routing.server import SimServer
from policies import cache_aware as ca
from skyctl.clock import FakeClock
from skyctl.router.affinity import CAPACITY_POLL_SECONDS, Affinity, poll_period
from skyctl.router.replica_load import ReplicaLoad, Sample, parse
from skyctl.spec import CacheAware

# a vLLM V1 page's lines that matter here (two engines: data parallel), among others
PAGE = """\
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",enable_prefix_caching="True",\
engine="0",num_cpu_blocks="None",num_gpu_blocks="2048"} 1.0
vllm:cache_config_info{block_size="16",cache_dtype="auto",enable_prefix_caching="True",\
engine="1",num_cpu_blocks="None",num_gpu_blocks="1024"} 1.0
# TYPE vllm:prompt_tokens counter
vllm:prompt_tokens_total{engine="0",model_name="m"} 90000.0
vllm:prompt_tokens_total{engine="1",model_name="m"} 10000.0
vllm:prompt_tokens_created{engine="0",model_name="m"} 1.7e9
vllm:request_prompt_tokens_bucket{le="100.0",model_name="m"} 3.0
"""


def test_a_page_gives_the_cache_in_tokens_and_the_prompt_tokens_so_far() -> None:
    sample = parse(PAGE, at=1.0)
    assert sample is not None
    assert (sample.cache_tokens, sample.prompt_tokens) == (3072 * 16.0, 100_000.0)
    assert sample.queued is None  # no request gauges: the load stays the in-flight count
    unsized = 'vllm:cache_config_info{block_size="16",num_gpu_blocks="None"} 1.0\n'
    assert parse(unsized, at=1.0) is None  # (vLLM before the engine has profiled)
    assert parse('vllm:cache_config_info{block_size="16"} 1.0\n', at=1.0) is None


async def test_the_simulated_server_publishes_its_cache_as_vllm_does() -> None:
    server = SimServer()
    server.replica.prompt_tokens_total = 1234
    page = await server._metrics(None)  # type: ignore[arg-type]
    assert page.text is not None
    sample = parse(page.text, at=0.0)
    assert sample is not None
    assert (sample.cache_tokens, sample.prompt_tokens) == (Model().cache_blocks * BLOCK, 1234.0)


def _sent(homes: ca.Homes, replica: int, keys: list[int], now: float) -> None:
    """A prompt of ``keys`` sent to ``replica`` and answered."""
    ticket = ca.Ticket()
    homes.sent(ca.Prefix(keys), replica, 0, ticket, now)
    homes.answered(ticket)


def test_each_replica_is_bounded_by_its_own_published_cache() -> None:
    affinity = Affinity(CacheAware(), FakeClock())
    homes, index = affinity.homes, affinity.index
    # replica 0's cache holds 1,600 tokens, replica 1's 4,000; 1 entry per 10 prompt tokens
    for rid, cache in ((0, 1600.0), (1, 4000.0)):
        affinity.observed(rid, Sample(None, None, 0.0, cache_tokens=cache, prompt_tokens=0.0))
    template = list(range(1000, 1100))  # a 100-block prefix
    for rid in (0, 1):
        _sent(homes, rid, template, 1.0)
    for n in range(3):  # then 300 blocks of other prompts each (3,000 prompt tokens)
        for rid in (0, 1):
            _sent(homes, rid, list(range(10_000 * (n + 2), 10_000 * (n + 2) + 100)), 2.0 + n)
    assert index.depths(template, now=6.0) == {0: 100, 1: 100}  # no bound learned yet
    for rid, cache in ((0, 1600.0), (1, 4000.0)):
        affinity.observed(rid, Sample(None, None, 6.0, cache_tokens=cache, prompt_tokens=4000.0))
    assert index.bounds == {0: 160, 1: 400}  # cache tokens x 400 entries / 4,000 tokens
    _sent(homes, 0, list(range(90_000, 90_010)), 7.0)  # the next prompt trims it to its bound
    assert (index.held(0), index.held(1)) == (160, 400)
    # replica 0's server has evicted the template; replica 1's (a larger cache) holds it
    assert index.depths(template, now=8.0) == {1: 100}


def test_learning_waits_for_a_cache_s_worth_and_starts_again_after_a_restart() -> None:
    capacity = ca.Capacity()
    capacity.count(0, 50)  # before its first sample: not counted
    assert capacity.observe(0, 1000.0, 500.0) is None  # the baseline
    capacity.count(0, 90)
    assert capacity.observe(0, 1000.0, 1400.0) is None  # 900 tokens: under one cache
    capacity.count(0, 10)
    assert capacity.observe(0, 1000.0, 1500.0) == 100  # 100 entries over 1,000 tokens
    assert capacity.observe(0, 1000.0, 20.0) == 100  # restarted: a new baseline, bound kept
    capacity.count(0, 40)
    assert capacity.observe(0, 1000.0, 1020.0) == 40
    capacity.forget(0)
    capacity.count(0, 10)  # a late answer from the replica that left
    assert capacity.observe(0, 1000.0, 5000.0) is None and capacity.bounds == {}


def test_a_copy_that_failed_does_not_count_towards_the_capacity() -> None:
    homes = ca.Homes()
    homes.observe(0, 1000.0, 0.0)
    ticket = ca.Ticket()
    homes.sent(ca.Prefix(list(range(50))), 0, 0, ticket, 1.0)
    homes.failed(ticket, 0)  # a 5xx: the server did not take the prompt
    homes.answered(ticket)
    _sent(homes, 0, list(range(100, 120)), 2.0)
    homes.observe(0, 1000.0, 2000.0)
    assert homes.index.bounds == {0: 10}  # 20 entries over 2,000 tokens, not 70


def test_a_replica_that_publishes_no_cache_keeps_no_bound() -> None:
    affinity = Affinity(CacheAware(), FakeClock())
    homes = affinity.homes
    affinity.observed(0, Sample(3.0, 0.2, 0.0))  # the request gauges only
    template = list(range(1000, 1100))
    _sent(homes, 0, template, 1.0)
    for n in range(20):
        _sent(homes, 0, list(range(10_000 * (n + 2), 10_000 * (n + 2) + 100)), 2.0 + n)
        affinity.observed(0, Sample(3.0, 0.2, 2.0 + n))
    assert affinity.index.bounds == {}
    assert affinity.index.depths(template, now=30.0) == {0: 100}  # as before: ever sent


def test_replica_cache_bytes_wins_and_needs_no_polling() -> None:
    affinity = Affinity(CacheAware(replica_cache_bytes=64 * 30), FakeClock())
    assert poll_period(affinity.options) is None
    affinity.observed(0, Sample(None, None, 0.0, cache_tokens=1e6, prompt_tokens=0.0))
    _sent(affinity.homes, 0, list(range(1000)), 1.0)
    affinity.observed(0, Sample(None, None, 2.0, cache_tokens=1e6, prompt_tokens=1e6))
    assert affinity.index.bounds == {0: 1000}  # learned, and not used:
    assert affinity.index.held(0) == 30
    # unset again (a reload): the bound learned meanwhile applies
    affinity.reconfigure(CacheAware())
    _sent(affinity.homes, 0, list(range(5000, 7000)), 3.0)
    assert affinity.index.held(0) == 1000


def test_the_default_reads_metrics_for_the_caches_not_for_the_load() -> None:
    assert poll_period(CacheAware()) == CAPACITY_POLL_SECONDS
    assert poll_period(CacheAware(replica_metrics_seconds=2.0)) == 2.0
    clock = FakeClock()
    affinity = Affinity(CacheAware(), clock)
    poller = ReplicaLoad(CAPACITY_POLL_SECONDS, clock, list)
    poller.samples[7] = Sample(9.0, 0.95, clock.now())  # published: 9 in flight, KV full
    affinity.poller = poller

    class Replica:
        def __init__(self, rid: int, in_flight: int) -> None:
            self.replica_id, self.in_flight = rid, in_flight

    replicas = [Replica(7, 0), Replica(8, 2)]
    ranked, _ = affinity.order(replicas, ca.NONE, clock.now())  # type: ignore[arg-type]
    assert ranked == [0, 1]  # by its own in-flight counts: replica 7 is the least loaded
