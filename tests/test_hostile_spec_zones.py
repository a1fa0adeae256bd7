"""A local zone's name cannot make its location read back as another place.

A location is written ``cloud/region/zone`` (the store, the routing feed) and
read back with :meth:`Location.parse`. ``local.zones`` took any text: a zone
``a/b`` in region ``r`` was written ``local/r/a/b`` and read back as zone
``b`` of region ``r/a`` (its replicas' zone matched no zone of the spec), a
region ``/r`` read back as no location at all, and a zone holding a newline
broke every line it was printed on. Now each is refused at its line.
"""

from __future__ import annotations

import pytest

from skyctl.errors import SpecError
from skyctl.spec_yaml import parse_spec
from skyctl.types import Location

BASE = "name: w\nservice:\n  replicas: 1\nrun: x\nresources:\n  cloud: local\nlocal:\n  zones:\n"


def spec(region: str, zone: str) -> str:
    return f'{BASE}    - {{region: "{region}", zone: "{zone}", spot_price: 1, ondemand_price: 2}}\n'


@pytest.mark.parametrize(
    ("region", "zone", "key"),
    [
        ("r", "a/b", "zone"),
        ("r", "../..", "zone"),
        ("/r", "z", "region"),
        ("r/", "z", "region"),
        ("r", "z\\nq", "zone"),
        ("r\\tq", "z", "region"),
        ("r", "z\\x7f", "zone"),
    ],
)
def test_a_name_that_would_not_read_back_is_refused_at_its_line(
    region: str, zone: str, key: str
) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec(region, zone), "s.yaml")
    message = str(caught.value)
    assert message.startswith(f"s.yaml:9: local.zones[0].{key}: ") and "\n" not in message
    assert "no control characters, and no '/'" in message


@pytest.mark.parametrize(("region", "zone"), [("local-east", "local-east-a"), ("r/x", "z")])
def test_names_that_read_back_load_and_round_trip(region: str, zone: str) -> None:
    (candidate,) = parse_spec(spec(region, zone), "s.yaml").local.zones
    where = Location("local", candidate.region, candidate.zone)
    assert Location.parse(str(where)) == where
