from __future__ import annotations

import pytest

from runtime.api import units


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (999, "999B"),
        (1000, "1kB"),
        (4_260_000, "4.26MB"),
        (1_980_000, "1.98MB"),
        (212, "212B"),
        (16_434_000, "16.4MB"),
        (2.5e9, "2.5GB"),
    ],
)
def test_human_size_three_digits(size: float, text: str) -> None:
    assert units.human_size(size, 3) == text


def test_bytes_size_binary() -> None:
    assert units.bytes_size(1536) == "1.5KiB"
    assert units.bytes_size(270336) == "264KiB"
    assert units.bytes_size(25_275_924_480) == "23.54GiB"


@pytest.mark.parametrize(
    ("secs", "text"),
    [
        (0.2, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (150, "2 minutes"),
        (3599, "59 minutes"),
        (3600, "About an hour"),
        (5400, "2 hours"),
        (47 * 3600, "47 hours"),
        (3 * 86400, "3 days"),
        (15 * 86400, "2 weeks"),
        (70 * 86400, "2 months"),
        (800 * 86400, "2 years"),
    ],
)
def test_human_duration(secs: float, text: str) -> None:
    assert units.human_duration(secs) == text


def test_time_ago() -> None:
    assert units.time_ago(1000, now=1120) == "2 minutes ago"
    assert units.time_ago(2000, now=1000) == "Less than a second ago"


def test_ram_in_bytes() -> None:
    assert units.ram_in_bytes("512m") == 512 * 1024**2
    assert units.ram_in_bytes("1g") == 1024**3
    assert units.ram_in_bytes("1.5GB") == int(1.5 * 1024**3)
    assert units.ram_in_bytes("100") == 100
    with pytest.raises(ValueError):
        units.ram_in_bytes("12x")


def test_go_durations_and_api_time() -> None:
    assert units.parse_go_duration("1h30m") == 5400
    assert units.parse_go_duration("250ms") == 0.25
    with pytest.raises(ValueError):
        units.parse_go_duration("10")
    assert units.api_time("10m", now=1000.0) == "400.000000000"
    assert units.api_time("1700000000") == "1700000000.000000000"
    assert units.api_time("1700000000.5") == "1700000000.500000000"
    assert units.api_time("2023-11-14T22:13:20Z") == "1700000000.000000000"
    assert units.api_time("2023-11-14T22:13:20.123456789Z") == "1700000000.123456789"
    with pytest.raises(ValueError):
        units.api_time("yesterday")


def test_rfc3339_zero_time() -> None:
    assert units.rfc3339_to_unix("0001-01-01T00:00:00Z") is None
    assert units.rfc3339_to_unix("2023-11-14T23:13:20+01:00") == 1700000000
