"""Providers: where replicas run. One narrow interface (``providers.base``).

Providers translate their SDK's errors into ``skyctl.errors`` at the boundary
and never decide anything. A cloud SDK is imported only by its own module, and
only when that provider is used (``providers.registry``).
"""
