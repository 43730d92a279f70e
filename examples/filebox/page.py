"""The one HTML page of the two small apps (the Flask app has Jinja templates).

Both apps route the same URLs: ``GET /`` shows this page, ``POST /`` uploads the
files of its form (field ``files``), ``POST /delete/<id>`` deletes one.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from .limits import human_size
from .models import Document

__all__ = ["human_size", "render"]

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
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
