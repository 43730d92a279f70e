"""The one HTML page of the two small apps (the Flask app has Jinja templates).

Both apps route the same URLs: ``GET /`` shows this page, ``POST /`` uploads the
files of its form (field ``files``, see :func:`receive`), ``POST /delete/<id>``
deletes one, ``GET /favicon.ico`` is :data:`FAVICON`.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session
from webob import Request

from . import limits, models
from .limits import human_size
from .models import Document

__all__ = ["FAVICON", "FAVICON_MAX_AGE", "FAVICON_TYPE", "human_size", "receive", "render"]

#: The apps' icon (two sizes, 16 and 32 pixels), served at /favicon.ico.
FAVICON = Path(__file__).parent / "static" / "favicon.ico"
#: Its type as IANA registers it, and how long browsers may keep it (seconds).
FAVICON_TYPE = "image/vnd.microsoft.icon"
FAVICON_MAX_AGE = 24 * 3600

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="icon" href="/favicon.ico">
<style>body{{font-family:sans-serif;margin:2em}} td{{padding:.3em .8em}}
img{{max-width:64px;max-height:64px}}</style></head>
<body><h1>{title}</h1>{error}
<form method="post" action="/" enctype="multipart/form-data">
<input type="file" name="files" multiple required> <button>Upload</button></form>
<table><tr><th></th><th>Name</th><th>Size</th><th>Type</th><th>Uploaded (UTC)</th><th></th></tr>
{rows}</table></body></html>
"""

_ROW = """<tr data-id="{id}"><td>{thumb}</td><td><a href="{url}">{name}</a></td><td>{size}</td>
<td>{type}</td><td>{date}</td><td><form method="post" action="/delete/{id}">
<button>Delete</button></form></td></tr>
"""


def render(documents: Iterable[Document], title: str, error: str = "") -> str:
    """The page listing ``documents``, with ``error`` above the form if any."""
    rows = []
    for document in documents:
        content = document.content
        thumb_url = document.thumb_url
        rows.append(
            _ROW.format(
                id=document.id,
                thumb=f'<img src="{escape(thumb_url)}" alt="">' if thumb_url else "",
                url=escape(content.url),
                name=escape(content.filename),
                size=human_size(document.size),
                type=escape(content.content_type),
                date=escape(content.uploaded_at),
            )
        )
    return _PAGE.format(
        title=escape(title),
        error=f'<p class="error">{escape(error)}</p>' if error else "",
        rows="".join(rows),
    )


def receive(session: Session, request: Request, max_upload: int) -> tuple[int, str]:
    """Store the files posted in ``request`` (field ``files``) as new documents.

    :returns: the status to answer and the message for the page: ``(303, "")``
        when every file was stored, 400 when none was chosen, 413 when they hold
        more than ``max_upload`` bytes (nothing stored), 422 when some were
        refused (the others are stored).
    """
    length = request.content_length or 0
    if length > limits.request_limit(max_upload):
        # Refused from its length, its form never parsed. The body is read and
        # dropped all the same (up to what waitress would read): wsgiref closes
        # the connection after answering, and a client still sending its body
        # then gets a broken pipe, not this answer.
        if length < limits.server_limit(max_upload):
            limits.discard(request.body_file_raw, length)
        return 413, limits.too_large_message(max_upload)
    received = request.environ.get("wsgi.input")
    uploads: list[Any] = [f for f in request.POST.getall("files") if getattr(f, "filename", "")]
    try:
        if not uploads:
            return 400, "Choose one or more files to upload."
        limits.check_size(uploads, max_upload)
        refused = models.add_all(session, uploads)
    except limits.UploadTooLarge as exc:
        return 413, str(exc)
    finally:
        # webob spools each file, and a long body, to temporary files it never closes.
        for upload in uploads:
            upload.file.close()
        if request.environ.get("wsgi.input") is not received:
            spooled: Any = request.body_file_raw
            spooled.close()
    return (422, " ".join(refused)) if refused else (303, "")
