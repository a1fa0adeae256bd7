"""The operator console: a web page served by the controller on its API's origin.

``skyctl console`` prints ``/console/login?token=...`` (see :mod:`.auth`);
:mod:`.web` serves the page and its live updates, :mod:`.snapshot` shapes
what the page shows, ``templates/`` render it and ``static/`` holds the
stylesheet, the small script and the vendored charting library (uPlot, MIT).
:mod:`.simpage` renders a ``skyctl sim`` report as a standalone page.
"""

from __future__ import annotations

from skyctl.console.auth import allows, is_console, login_page, login_url
from skyctl.console.web import add_routes

__all__ = ["add_routes", "allows", "is_console", "login_page", "login_url"]
