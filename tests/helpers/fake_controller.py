"""A controller on a fake clock and a fresh store, no process: for API and input tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from providers.registry import ProviderSet
from skyctl.clock import FakeClock
from skyctl.controller import Controller
from skyctl.store import Store


@asynccontextmanager
async def fake_controller(tmp_path: Path) -> AsyncIterator[Controller]:
    """A :class:`Controller` over ``tmp_path/state.db`` and the local provider (its state
    under ``tmp_path/local``), stopped and its store closed on exit."""
    clock = FakeClock()
    store = Store(tmp_path / "state.db")
    providers = ProviderSet(config={}, clock=clock, local_state=tmp_path / "local")
    controller = Controller(store, providers, clock)
    try:
        yield controller
    finally:
        await controller.stop(0)
        store.close()
