"""depot.http.rules: the pieces of the HTTP decisions that are easiest to pin down alone."""

from __future__ import annotations

import email.utils
from datetime import datetime, timedelta, timezone

import pytest

from depot.http.rules import expires_in, header_date, http_date, parse_ranges


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1999, 12, 31, 23, 59, 59),
        datetime(2024, 2, 29, 0, 0, 0),
        datetime(2026, 11, 24, 5, 6, 7),
    ],
)
def test_http_date_is_imf_fixdate(moment: datetime) -> None:
    expected = email.utils.format_datetime(moment.replace(tzinfo=timezone.utc), usegmt=True)
    assert http_date(moment) == expected


def test_expires_in() -> None:
    value = email.utils.parsedate_to_datetime(expires_in(3600))
    delta = value - datetime.now(timezone.utc)
    assert timedelta(minutes=59) < delta <= timedelta(hours=1)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", [(0, 1)]),
        ("bytes=0-", [(0, 100)]),
        ("bytes=-1", [(99, 100)]),
        ("bytes=90-200", [(90, 100)]),
        ("BYTES=1-2, 4-5", [(1, 3), (4, 6)]),
        ("bytes=100-", []),
        ("bytes=-0", []),
        ("bytes=0-9,100-", [(0, 10)]),
        ("bytes=5-4", None),
        ("bytes=1-2,x", None),
        ("lines=1-2", None),
        ("bytes=0-60,40-99", None),  # 121 bytes of a 100-byte file
        ("bytes=" + ",".join(["0-0"] * 101), None),
    ],
)
def test_parse_ranges(header: str, expected) -> None:
    assert parse_ranges(header, 100) == expected


@pytest.mark.parametrize(
    ("header", "length", "expected"),
    [
        ("bytes=0-" + "9" * 5000, 100, [(0, 100)]),
        ("bytes=" + "9" * 5000 + "-", 100, []),
        ("bytes=-" + "9" * 5000, 100, [(0, 100)]),
        ("bytes=" + "0" * 5000 + "7-" + "0" * 5000 + "8", 100, [(7, 9)]),
        ("bytes=\u0661-\u0662", 100, None),  # only ASCII digits are digits
        ("bytes=1-2\u2003", 100, None),
        ("bytes=-5", 0, None),  # RFC 9110 §14.1.2: the whole (empty) file
        ("bytes=0-0,-5", 0, None),
        ("bytes=0-0", 0, []),
        ("bytes=-0", 0, []),
    ],
)
def test_parse_ranges_defensively(header: str, length: int, expected) -> None:
    assert parse_ranges(header, length) == expected


@pytest.mark.parametrize(
    "value",
    [
        "Fri, 01 Jan 10000 00:00:00 GMT",
        "Mon, 01 Jan 99999999999999999999 00:00:00 GMT",
        "Mon, 01 Jan 2024 00:00:00 +99999999999",
        "garbage",
        "",
    ],
)
def test_header_date_is_none_for_what_names_no_moment(value: str) -> None:
    assert header_date(value) is None


def test_header_date() -> None:
    assert header_date("Sun, 06 Nov 1994 08:49:37 GMT") == datetime(
        1994, 11, 6, 8, 49, 37, tzinfo=timezone.utc
    )
