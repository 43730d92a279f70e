"""The application benchmarks/uploads.py runs under gunicorn: a plain upload and a tus endpoint.

``POST /plain`` takes a multipart form (webob parses it to a temporary file,
as web frameworks do) and stores its ``file`` field with ``create()``;
``/files`` is depot's tus endpoint. Both store into the local depot at
``BENCH_STORAGE``.
"""

from __future__ import annotations

import os
from typing import Any

import webob

from depot.manager import DepotManager
from depot.uploads.tus import TusWSGIApp

DepotManager.configure("default", {"depot.storage_path": os.environ["BENCH_STORAGE"]})


def plain(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    request = webob.Request(environ)
    upload = request.POST["file"]
    file_id = DepotManager.get().create(upload.file, upload.filename)  # type: ignore[union-attr]
    start_response("201 Created", [("Content-Type", "text/plain")])
    return [file_id.encode()]


application = TusWSGIApp(mountpoint="/files", depot="default", fallback=plain)
