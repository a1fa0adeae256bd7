"""The controller: one asyncio process that reconciles every service.

- ``controller``: the loop, service registry and the operations the API calls.
- ``reconcile``: one service's tick: observe -> ``policies.reconcile.plan`` -> act.
- ``prober``: readiness probes (aiohttp), results kept in memory per replica.
- ``api``: the loopback HTTP API the CLI talks to (token auth).
- ``daemon``: the process entry point (pid/port file, signals).
"""

from skyctl.controller.controller import Controller

__all__ = ["Controller"]
