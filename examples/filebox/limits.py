"""How much one upload may hold, and what the apps say when it holds more.

One setting, ``FILEBOX_MAX_UPLOAD_MB`` (:attr:`Settings.max_upload
<filebox.settings.Settings.max_upload>`), is the limit: the bytes of the files
sent at once. Everything else is derived here from it:

* the page's script checks the files' sizes before sending
  (:func:`too_large_message` is the text it shows);
* the app refuses a request longer than :func:`request_limit` before reading
  its form, and counts the files of a shorter one (:func:`check_size`);
* the HTTP server (waitress) stops reading at :func:`server_limit`, well above
  what the app accepts, so that the app, not the server, answers a post a
  little too large, with its own page and the limit. A post larger still (only
  possible without JavaScript) is cut off by waitress.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "FORM_ENVELOPE",
    "UploadTooLarge",
    "check_size",
    "discard",
    "human_size",
    "request_limit",
    "server_limit",
    "too_large_message",
]

#: Room for the form around the files in a request: boundaries, part headers,
#: file names. A thousand files with long names fit in it.
FORM_ENVELOPE = 1024 * 1024


class UploadTooLarge(ValueError):
    """The files of an upload hold more bytes than the app accepts at once."""

    def __init__(self, max_upload: int) -> None:
        super().__init__(too_large_message(max_upload))
        self.max_upload = max_upload


def too_large_message(max_upload: int) -> str:
    """What the page says about an upload larger than ``max_upload`` bytes."""
    return (
        f"This upload is larger than the {human_size(max_upload)} accepted at once. "
        "Upload fewer or smaller files."
    )


def request_limit(max_upload: int) -> int:
    """The longest request body the app reads: ``max_upload`` bytes of files in their form."""
    return max_upload + FORM_ENVELOPE


def server_limit(max_upload: int) -> int:
    """What the HTTP server reads at most, for waitress's ``max_request_body_size``.

    Twice the app's own limit: waitress reads a whole request before the app
    sees it, so this bounds the disk a post can fill; waitress refuses a
    request of this length or longer with its own plain-text answer.
    """
    return 2 * request_limit(max_upload) + 1


def check_size(uploads: Iterable[Any], max_upload: int) -> None:
    """Refuse ``uploads`` (werkzeug or webob uploads) holding more than ``max_upload`` bytes.

    :raises UploadTooLarge: they do.
    """
    if sum(_size(upload) for upload in uploads) > max_upload:
        raise UploadTooLarge(max_upload)


def discard(stream: Any, length: int) -> None:
    """Read ``length`` bytes from ``stream`` (a request's body) and drop them."""
    while length > 0:
        chunk = stream.read(min(length, 64 * 1024))
        if not chunk:
            break
        length -= len(chunk)


def _size(upload: Any) -> int:
    # werkzeug's FileStorage has .stream, webob's upload (a cgi field) .file;
    # the server spooled either to a seekable file.
    stream = getattr(upload, "stream", None) or upload.file
    position = stream.tell()
    size = int(stream.seek(0, 2))
    stream.seek(position)
    return size


def human_size(size: int) -> str:
    """``1536`` as ``'1.5 KiB'``."""
    if size < 1024:
        return f"{size} bytes"
    value, unit = size / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"
