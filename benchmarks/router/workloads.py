"""The two request workloads the router benchmarks measure, side by side.

- ``same``: wrk's plain ``GET /``, every request head byte-identical, and so
  every reply head from the backend (nginx's changes once a second, with its
  ``Date``). The router's head cache (:mod:`skyctl.router.headcache`) parses
  each head once: this is the best case, not real traffic.
- ``varied``: what an LLM API client sends: ``POST /v1/chat/completions`` with
  a JSON body whose length changes from request to request (so does its
  ``Content-Length``), a unique ``X-Request-Id`` per request and the headers an
  OpenAI SDK sends; the backend answers each with its own ``X-Request-Id``
  (nginx's ``$request_id``), as vLLM and hosted APIs do. No two request heads
  and no two reply heads are alike: every head is parsed.

The backend (:func:`backend_server`) answers both on one port; a wrk Lua
script (:func:`script`) makes the varied requests (the URL gives the host only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

HEADS: Final = ("same", "varied")

# wrk's request(): a new head each call. The body's content length cycles over
# 1,009 values (31..1,039 bytes of content) and the id counts up, per connection
# thread, so neither repeats within a run.
_VARIED_LUA: Final = r"""
local counter = 0
local pad = string.rep("a", 1100)
request = function()
  counter = counter + 1
  local n = 31 + (counter * 7919) % 1009
  local body = '{"model":"meta-llama/Llama-3.1-8B-Instruct","messages":[{"role":"user",'
    .. '"content":"' .. string.sub(pad, 1, n) .. '"}],"max_tokens":64,"stream":false}'
  local headers = {
    ["Content-Type"] = "application/json",
    ["Accept"] = "application/json",
    ["User-Agent"] = "OpenAI/Python 1.54.4",
    ["X-Stainless-Lang"] = "python",
    ["X-Stainless-Package-Version"] = "1.54.4",
    ["X-Request-Id"] = string.format("req-%08x-%d", counter * 2654435761 % 4294967296, counter),
  }
  return wrk.format("POST", "/v1/chat/completions", headers, body)
end
"""


def script(tmp: Path, heads: str) -> Path | None:
    """The wrk script for a workload (None: wrk's plain GET of the URL)."""
    if heads == "same":
        return None
    path = tmp / "varied-heads.lua"
    path.write_text(_VARIED_LUA)
    return path


def backend_server(port: int) -> str:
    """An nginx ``server`` block answering both workloads with a tiny body: ``/v1/``
    with a per-request ``X-Request-Id`` (a new reply head each time), the rest as is."""
    return (
        f"server {{ listen 127.0.0.1:{port}; "
        f'location / {{ return 200 "hello world\\n"; }} '
        f"location /v1/ {{ add_header X-Request-Id $request_id; "
        f'return 200 "hello world\\n"; }} }}'
    )
