"""The request router: one reverse proxy per service, in the router process.

Public API: :class:`Router` (see :mod:`skyctl.router.server`).
"""

from skyctl.router.server import LOCAL_PREFIX, Router

__all__ = ["LOCAL_PREFIX", "Router"]
