"""depot.utils and depot.io.utils: the helpers kept at filedepot's import paths."""

from __future__ import annotations

import io
import re
from datetime import datetime

import pytest

from depot.io.utils import FileIntent, file_from_content, parse_timestamp, timestamp
from depot.utils import make_content_disposition, utcfromtimestamp_naive, utcnow_naive


def test_content_disposition_is_filedepots_format() -> None:
    # The exact values filedepot 0.12 produces for these names (observed).
    assert make_content_disposition("inline", "report.pdf") == (
        "inline;filename=\"report.pdf\";filename*=utf-8''report.pdf"
    )
    assert make_content_disposition("attachment", "caf\u00e9 \u2615.txt") == (
        "attachment;filename=\"cafe :coffee:.txt\";filename*=utf-8''caf%C3%A9%20%E2%98%95.txt"
    )


@pytest.mark.parametrize("name", ['a"b.txt', "a\\b.txt", "x\r\nSet-Cookie: a=b.txt", 'q";x=1.txt'])
def test_content_disposition_cannot_be_broken_out_of(name: str) -> None:
    value = make_content_disposition("inline", name)
    assert "\r" not in value and "\n" not in value
    fallback = re.fullmatch(r'inline;filename="((?:[^"\\]|\\.)*)";filename\*=utf-8\'\'(\S+)', value)
    assert fallback, value
    assert "%" in fallback.group(2) or fallback.group(2) == name


def test_times_are_naive_utc() -> None:
    assert utcnow_naive().tzinfo is None
    assert utcfromtimestamp_naive(0) == datetime(1970, 1, 1)


def test_timestamp_keeps_filedepots_format() -> None:
    assert datetime.strptime(timestamp(), "%Y-%m-%d %H:%M:%S")


def test_timestamp_round_trips() -> None:
    text = timestamp()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", text)
    assert parse_timestamp(text).strftime("%Y-%m-%d %H:%M:%S") == text


@pytest.mark.parametrize(
    "bad", ["2024-05-01T12:00:00", "2024-05-01", "yesterday", "2024-13-01 00:00:00"]
)
def test_parse_timestamp_refuses_other_formats(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(bad)


def test_file_from_content() -> None:
    must_close, f = file_from_content(b"bytes")
    assert must_close and f.read() == b"bytes"
    f.close()
    stream = io.BytesIO(b"abc")
    stream.read()
    must_close, f = file_from_content(FileIntent(stream, "a.txt", None))
    assert (must_close, f, f.read()) == (False, stream, b"abc")
    with pytest.raises(TypeError, match="not str"):
        file_from_content("text")


def test_file_intent_repr_and_fileinfo() -> None:
    intent = FileIntent(b"x", "a.txt", "text/plain")
    assert intent.fileinfo == (b"x", "a.txt", "text/plain")
    assert repr(intent) == "<FileIntent filename='a.txt' content_type='text/plain'>"


@pytest.mark.parametrize("name", ["caf\udce9.txt", "\udcff", "\ud800", "a\udce9\r\n.pdf"])
def test_content_disposition_never_fails_on_lone_surrogates(name: str) -> None:
    # What os.fsdecode() makes of bytes that are not UTF-8.
    value = make_content_disposition("attachment", name)
    value.encode("ascii")
    assert "%EF%BF%BD" in value


@pytest.mark.parametrize(
    ("name", "extension"),
    [
        ("a" * 20000 + ".pdf", ".pdf"),
        ("\u732b" * 20000 + ".png", ".png"),
        ("\u732b" * 255, ""),
        ("\U0001f408" * 1000 + ".mp4", ".mp4"),
        ('"' * 20000 + ".txt", ".txt"),
    ],
)
def test_content_disposition_is_bounded_and_keeps_the_extension(name: str, extension: str) -> None:
    value = make_content_disposition("attachment", name)
    assert len(value) < 1024, len(value)
    fallback, encoded = re.fullmatch(
        r'attachment;filename="(.*)";filename\*=utf-8\'\'(.*)', value
    ).groups()
    assert fallback.endswith(extension) and encoded.endswith(extension)
