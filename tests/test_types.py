"""Locations print and parse back as the same value."""

from __future__ import annotations

import pytest

from skyctl.types import Location

CASES = [
    (Location("aws", "us-east-1", "us-east-1a"), "aws/us-east-1/us-east-1a"),
    (Location("azure", "eastus", "1"), "azure/eastus/1"),
    (Location("kubernetes", "gke-us", ""), "kubernetes/gke-us"),
    (
        Location("kubernetes", "arn:aws:eks:us-east-1:1:cluster/prod", ""),
        "kubernetes/arn:aws:eks:us-east-1:1:cluster/prod/",
    ),
]


@pytest.mark.parametrize(("location", "text"), CASES)
def test_a_location_round_trips_through_its_text(location: Location, text: str) -> None:
    assert str(location) == text
    assert Location.parse(text) == location


@pytest.mark.parametrize("text", ["", "aws", "aws/", "/r/z", "aws//", "aws//z"])
def test_text_that_is_not_a_location_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a location"):
        Location.parse(text)
