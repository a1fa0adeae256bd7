"""Per-location circuit breakers for provider calls.

A location whose API keeps failing with transient errors (throttling, 5xx,
timeouts) is opened for a cool-down: the controller stops sending it
launches, and placement treats it like a location without capacity, so one
sick region cannot stall the loop or the other locations. After the cool-down
one trial call is let through (half-open); a success closes the breaker, a
failure opens it again for twice as long (capped).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from skyctl.clock import Clock
from skyctl.types import Location

#: consecutive transient failures that open a breaker
FAILURES_TO_OPEN = 3
BASE_COOLDOWN = 30.0
MAX_COOLDOWN = 600.0


@dataclass
class _State:
    failures: int = 0
    open_until: float = 0.0
    cooldown: float = BASE_COOLDOWN


@dataclass
class Breakers:
    clock: Clock
    _states: dict[Location, _State] = field(default_factory=dict)

    def allows(self, location: Location) -> bool:
        """Whether a call to this location may go out now."""
        state = self._states.get(location)
        return state is None or self.clock.now() >= state.open_until

    def success(self, location: Location) -> None:
        self._states.pop(location, None)

    def failure(self, location: Location) -> bool:
        """Record a transient failure; True when this opened the breaker."""
        state = self._states.setdefault(location, _State())
        state.failures += 1
        now = self.clock.now()
        if state.open_until and now >= state.open_until:  # the half-open trial failed
            state.cooldown = min(state.cooldown * 2, MAX_COOLDOWN)
            state.open_until = now + state.cooldown
            return True
        if state.failures >= FAILURES_TO_OPEN and not state.open_until:
            state.open_until = now + state.cooldown
            return True
        return False

    def open_locations(self) -> list[Location]:
        now = self.clock.now()
        return sorted(loc for loc, s in self._states.items() if now < s.open_until)
