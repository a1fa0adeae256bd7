"""A corrupt routing table, cached or watched, costs only what is corrupt.

The router process keeps the last table it applied in ``routes.cache`` and
applies it first when it starts. A cache that was JSON but no table (a list,
an entry that is a number) raised out of the start: the process died, the
supervisor started another, which read the same file (a restart loop, no
endpoint open until someone deleted it). And one malformed entry in a table
(``backends: [5]``) raised out of ``Endpoints.apply``: the services sorted
after it were not applied either. Now a cache that is no table is ignored
(the watch's full state follows), and a malformed entry is its own service's
error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from skyctl.clock import SystemClock
from skyctl.router.endpoints import Endpoints
from skyctl.router.process import cached_table
from skyctl.secrets import Secrets

SPEC = "name: web\nservice:\n  replicas: 1\nrun: sleep 1000\n"


@pytest.mark.parametrize(
    "text", ["[1, 2]", '{"web": 5}', '"text"', "null", "{not json", '{"web": []}']
)
def test_a_cache_that_is_no_routing_table_is_ignored(tmp_path: Path, text: str) -> None:
    cache = tmp_path / "routes.cache"
    cache.write_text(text)
    assert cached_table(cache) is None


def test_a_cached_table_reads_back(tmp_path: Path) -> None:
    cache = tmp_path / "routes.cache"
    cache.write_text('{"web": {"spec_version": 1}}')
    assert cached_table(cache) == {"web": {"spec_version": 1}}
    assert cached_table(tmp_path / "absent") is None


def entry(secrets: Secrets, **fields: Any) -> dict[str, Any]:
    sealed = secrets.seal(SPEC)
    return {
        "spec_version": 1,
        "yaml": sealed.yaml_text,
        "source": None,
        "secrets": sealed.ciphertext,
        "host": "127.0.0.1",
        "port": 0,
        "backends": [],
        **fields,
    }


@pytest.mark.parametrize(
    "bad", [{"backends": [5]}, {"backends": 7}, {"port": [1]}], ids=["item", "list", "port"]
)
async def test_a_malformed_entry_is_its_services_error_and_the_others_still_apply(
    tmp_path: Path, bad: dict[str, Any]
) -> None:
    secrets = Secrets(tmp_path / "secret.key")
    endpoints = Endpoints(secrets, SystemClock())
    try:
        await endpoints.apply(
            {"full": True, "services": {"a": entry(secrets, **bad), "b": entry(secrets)}}
        )
        assert "b" in endpoints.routers  # sorted after the bad one, applied all the same
        assert "a" in endpoints.errors and "b" not in endpoints.errors
    finally:
        await endpoints.close(1.0)
