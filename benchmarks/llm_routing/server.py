"""A simulated OpenAI-compatible LLM server over HTTP (aiohttp), no GPU.

``POST /v1/chat/completions`` and ``/v1/completions`` run on one
:class:`~benchmarks.llm_routing.engine.Replica` in real time scaled by
``time_scale`` (0.01: a 20 ms step takes 0.2 ms): the prompt is tokenised
(words of a message are its tokens: integers stand for themselves, other words
are hashed; each message adds its role's marker and the prompt ends with the
assistant's), the answer is ``max_tokens`` tokens (16 by default) derived
from the prompt, streamed as server-sent events one token per engine step
when ``"stream": true``. The last chunk (or the whole answer) carries
``usage`` with ``prompt_tokens_details.cached_tokens``, as vLLM reports it.
``GET /metrics`` publishes vLLM's gauges (``vllm:num_requests_running``,
``vllm:num_requests_waiting``, ``vllm:gpu_cache_usage_perc``), its cache's size
(``vllm:cache_config_info``, an info gauge: ``num_gpu_blocks`` and ``block_size``
among its labels) and its token counters (``vllm:prompt_tokens_total``,
``vllm:generation_tokens_total``), as vLLM's V1 engine writes them.

``python -m benchmarks.llm_routing.server --port 8001`` serves one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import zlib
from typing import Any

from aiohttp import web

from benchmarks.llm_routing.engine import BLOCK, Job, Model, Replica
from benchmarks.llm_routing.workloads import ROLE_TOKENS

MAX_TOKENS = 32_768  # an answer's tokens at most (a model's context, not the memory's)


def tokens_of(text: str) -> list[int]:
    return [int(w) if w.isdigit() else 10 + zlib.crc32(w.encode()) % 49_990 for w in text.split()]


def prompt_tokens(doc: dict[str, Any]) -> list[int]:
    """The prompt as the chat template lays it out (see the module docstring)."""
    if "messages" in doc:
        out: list[int] = []
        for message in doc["messages"]:
            role = message.get("role", "user")
            if role != "assistant":
                out.append(ROLE_TOKENS.get(role, 2))
            out += tokens_of(str(message.get("content") or ""))
            if role == "user":
                out.append(ROLE_TOKENS["assistant"])
        return out
    return tokens_of(str(doc.get("prompt", "")))


class SimServer:
    """One replica served over HTTP (see the module docstring)."""

    def __init__(self, replica_id: int = 0, model: Model | None = None, time_scale: float = 0.01):
        self.replica = Replica(replica_id, model or Model())
        self.time_scale = time_scale
        self._streams: dict[int, asyncio.Queue[int | None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._clock = 0.0  # virtual seconds
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        app.router.add_post("/v1/completions", self._complete)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._task = asyncio.create_task(self._run())
        return self.port

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    async def _run(self) -> None:
        """Drive the engine: sleep each step's (scaled) length, then end it."""
        replica = self.replica
        while True:
            if replica.step_end is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            await asyncio.sleep((replica.step_end - self._clock) * self.time_scale)
            self._clock = replica.step_end
            decoding = list(replica.decoding)
            first, finished = replica.end_step(self._clock)
            for job in decoding + first:
                self._streams[id(job)].put_nowait(1)
            for job in finished:
                self._streams[id(job)].put_nowait(None)

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _metrics(self, request: web.Request) -> web.Response:
        r = self.replica
        usage = r.kv_usage
        labels = 'engine="0",model_name="sim"'
        text = (
            "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
            "# TYPE vllm:cache_config_info gauge\n"
            f'vllm:cache_config_info{{block_size="{BLOCK}",cache_dtype="auto",'
            f'enable_prefix_caching="True",engine="0",num_cpu_blocks="None",'
            f'num_gpu_blocks="{r.model.cache_blocks}"}} 1.0\n'
            f"vllm:num_requests_running{{{labels}}} {float(r.running)}\n"
            f"vllm:num_requests_waiting{{{labels}}} {float(len(r.waiting))}\n"
            f"vllm:gpu_cache_usage_perc{{{labels}}} {usage}\n"
            "# TYPE vllm:prompt_tokens counter\n"
            f"vllm:prompt_tokens_total{{{labels}}} {float(r.prompt_tokens_total)}\n"
            "# TYPE vllm:generation_tokens counter\n"
            f"vllm:generation_tokens_total{{{labels}}} {float(r.generation_tokens_total)}\n"
        )
        return web.Response(text=text, content_type="text/plain")

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        try:
            doc = await request.json()
            tokens = prompt_tokens(doc)
            count = int(doc.get("max_tokens") or 16)
        except (ValueError, TypeError, AttributeError, OverflowError):
            return web.json_response({"error": "expected an OpenAI JSON request"}, status=400)
        if not tokens or not 1 <= count <= MAX_TOKENS:
            error = f"empty prompt, or max_tokens not within 1 to {MAX_TOKENS}"
            return web.json_response({"error": error}, status=400)
        seed = zlib.crc32(json.dumps(tokens[-8:]).encode())
        answer = [10 + (seed + 7919 * i) % 49_990 for i in range(count)]
        job = Job(tokens, answer, self._clock)
        queue: asyncio.Queue[int | None] = asyncio.Queue()
        self._streams[id(job)] = queue
        try:
            self.replica.submit(job, self._clock)
            self._wake.set()
            chat = "messages" in doc
            if doc.get("stream"):
                return await self._stream(request, job, queue, chat)
            while await queue.get() is not None:
                pass
            text = " ".join(map(str, answer))
            choice = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
            body = {
                "object": "chat.completion" if chat else "text_completion",
                "choices": [{"index": 0, **choice, "finish_reason": "length"}],
                "usage": self._usage(job),
            }
            return web.json_response(body)
        finally:
            del self._streams[id(job)]

    async def _stream(
        self, request: web.Request, job: Job, queue: asyncio.Queue[int | None], chat: bool
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        sent = 0
        while await queue.get() is not None:  # one token per engine step, then None
            text = f"{job.answer[sent]} "
            sent += 1
            delta = {"delta": {"content": text}} if chat else {"text": text}
            chunk = json.dumps({"choices": [{"index": 0, **delta}]}).encode()
            await resp.write(b"data: %s\n\n" % chunk)
        final = {"choices": [], "usage": self._usage(job)}
        await resp.write(b"data: %s\n\ndata: [DONE]\n\n" % json.dumps(final).encode())
        await resp.write_eof()
        return resp

    @staticmethod
    def _usage(job: Job) -> dict[str, Any]:
        return {
            "prompt_tokens": len(job.tokens),
            "completion_tokens": len(job.answer),
            "total_tokens": len(job.tokens) + len(job.answer),
            "prompt_tokens_details": {"cached_tokens": job.cached},
        }


async def _serve(args: argparse.Namespace) -> None:
    server = SimServer(args.replica_id, time_scale=args.time_scale)
    port = await server.start(args.host, args.port)
    print(f"PORT {port}", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.llm_routing.server", description=__doc__
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    parser.add_argument("--replica-id", type=int, default=0)
    parser.add_argument("--time-scale", type=float, default=0.01, help="real s per virtual s")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0 to 65535 (0: a free one), got {args.port}")
    if not math.isfinite(args.time_scale) or args.time_scale < 0:
        parser.error(f"--time-scale must be a finite number >= 0, got {args.time_scale:g}")
    try:
        asyncio.run(_serve(args))
    except OSError as exc:  # the address: taken, or a host that does not resolve
        parser.exit(1, f"{parser.prog}: cannot listen on {args.host}:{args.port}: {exc}\n")


if __name__ == "__main__":
    main()
