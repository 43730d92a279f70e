"""The rules for stored values that end up in headers (depot/_headers.py)."""

from __future__ import annotations

import pytest

from depot._headers import (
    MAX_CONTENT_TYPE_LENGTH,
    MAX_FILENAME_LENGTH,
    media_type,
    safe_content_type,
    safe_filename,
    shorten_filename,
)


@pytest.mark.parametrize(
    "value",
    [
        "text/plain",
        "image/svg+xml",
        "application/vnd.ms-excel",
        'text/plain; charset="utf-8"',
        "text/plain;charset=utf-8",
        "multipart/form-data; boundary=----x",
        'text/plain; title="a \\"quoted\\" word"',
        "text/plain;",
    ],
)
def test_safe_content_types_are_kept(value: str) -> None:
    assert safe_content_type(value) == value
    assert safe_content_type(f"  {value} ") == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "text",
        "text/",
        "/plain",
        "text/html\r\n\r\n;x=y",
        "text/html;x=y\r\nSet-Cookie: a=b",
        "text/html\n",
        "text/html\x0b",
        "text/html\x1c",
        "text/html\x1f;x=y",
        "text/h\u00e9ml",
        "text/html;x=\u2028",
        "text/ht\u0660ml",  # a Unicode digit, which \w would accept
        "image/png, text/html",
        "image/png/../../text/html",
        'text/plain; a="unterminated',
        "text/plain; =x",
        "text/plain; a=b c",
        None,
        5,
        b"text/plain",
        "x/" + "a" * MAX_CONTENT_TYPE_LENGTH,
    ],
)
def test_unsafe_content_types_are_refused(value: object) -> None:
    assert safe_content_type(value) is None
    assert media_type(value) is None


def test_media_type_is_lower_cased_without_parameters() -> None:
    assert media_type("Image/PNG; q=1") == ("image", "png")


def test_lone_surrogates_become_replacement_characters() -> None:
    name = safe_filename("caf\udce9.txt")
    assert name == "caf\ufffd.txt"
    name.encode("utf-8")  # encodable: the point of it


def test_control_characters_are_kept_for_serving_to_escape() -> None:
    assert safe_filename("a\r\nb.txt") == "a\r\nb.txt"


def test_empty_name_is_unnamed() -> None:
    assert safe_filename("") == "unnamed"


def test_long_names_keep_their_extension() -> None:
    name = safe_filename("x" * 20000 + ".pdf")
    assert len(name) == MAX_FILENAME_LENGTH
    assert name.endswith("x.pdf")


def test_long_names_without_a_short_extension_are_cut() -> None:
    assert shorten_filename("a" * 300) == "a" * MAX_FILENAME_LENGTH
    assert shorten_filename("a." + "b" * 300) == ("a." + "b" * 300)[:MAX_FILENAME_LENGTH]
    assert shorten_filename("short.txt") == "short.txt"
