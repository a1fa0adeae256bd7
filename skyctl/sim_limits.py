"""The replay's bounds the ``skyctl sim`` options state (their ranges and help), apart
from :mod:`skyctl.sim.engine` and :mod:`skyctl.traces` so the CLI names them without
importing either."""

DEFAULT_COLD_START = 180.0
#: replicas one replay holds at most: its work grows with N x launches (3,000 on 100 ticks: 37 s)
MAX_REPLICAS = 1000
#: USD/h: a price beyond is a typo (and N x price x hours would overflow to inf)
MAX_PRICE = 1_000_000.0
