"""The console page with hostile text in a service's events: shown as text, the page intact.

An event message (errors carry what replicas and providers said) holding
HTML, an ``<img onerror>``, ``</textarea>`` or ``<!--<script>`` appears
escaped in the server-rendered fragment, and the page's embedded JSON
(``<script type="application/json" id="initial">``) carries no ``<`` at all:
``<!--<script>`` there put the HTML parser in the script's double-escaped
state, so the element ran on past its ``</script>`` and swallowed the
``<script src>`` tags after it (chromium's DOM shows it): the page loaded
no uPlot and no console.js, and never updated again.
"""

from __future__ import annotations

import json
import re

from aiohttp.test_utils import TestServer

from tests.test_console import api, logged_in  # noqa: F401  (api is a fixture)
from tests.test_controller import SPOT, Harness

HOSTILE = [
    '"><img src=x onerror=alert(1)>',
    "</textarea><script>alert(2)</script>",
    "<!--<script>",
    "&lt;already escaped&gt; & \u2028",
]
INITIAL = re.compile(r'<script type="application/json" id="initial">(.*?)</script>', re.S)


async def test_hostile_event_text_is_escaped_and_leaves_the_page_whole(
    h: Harness,
    api: TestServer,  # noqa: F811
) -> None:
    await h.controller.create_service(SPOT.format(name="web", replicas=1), None)
    for message in HOSTILE:
        h.store.add_event("web", "error", message, now=h.clock.now())
    session = await logged_in(api)
    async with session:
        async with session.get(api.make_url("/console/")) as r:
            page = await r.text()
    assert "<img" not in page and "alert(2)</script>" not in page
    assert "&lt;!--&lt;script&gt;" in page and "&#34;&gt;&lt;img src=x onerror" in page
    (embedded,) = INITIAL.findall(page)
    assert "<" not in embedded and ">" not in embedded
    fragment = json.loads(embedded)["parts"]["ev-web"]  # what JSON.parse reads back
    assert "&lt;/textarea&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in fragment
    tail = page[page.index(embedded) + len(embedded) :]
    assert tail.lstrip().startswith("</script>\n<script src=")  # the scripts after it stand
