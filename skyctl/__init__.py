"""skyctl: serve AI models on the cheapest spot capacity across clouds.

Package layout (imports only go downward, checked by ``tests/test_layers.py``)::

    skyctl.cli
      -> skyctl.controller, skyctl.router, skyctl.sim
        -> skyctl.store, providers, policies
          -> skyctl.types, skyctl.spec, skyctl.errors, skyctl.lifecycle, skyctl.clock, skyctl.traces
"""

__version__ = "0.1.0"
