"""Policies: pure functions from an observation and ``now`` to decisions.

No module here imports a provider, the store, aiohttp or a cloud SDK, or reads
the clock. State a policy needs between calls comes in the observation and goes
out in the result (``policy_state``); the controller persists it.
"""
