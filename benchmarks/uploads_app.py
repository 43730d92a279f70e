"""The application benchmarks/uploads.py runs under gunicorn: a plain upload and a tus endpoint.

``POST /plain`` takes a multipart form (webob parses it to a temporary file,
as web frameworks do) and stores its ``file`` field with ``create()``;
``/files`` is depot's tus endpoint. Both store into the local depot at
``BENCH_STORAGE``, or into an S3 bucket at ``BENCH_S3_ENDPOINT`` when it is set.
"""

from __future__ import annotations

import os
from typing import Any

import webob

from depot.manager import DepotManager
from depot.uploads.tus import TusWSGIApp

if os.environ.get("BENCH_S3_ENDPOINT"):
    settings = {
        "depot.backend": "depot.io.boto3.S3Storage",
        "depot.endpoint_url": os.environ["BENCH_S3_ENDPOINT"],
        "depot.access_key_id": "bench",
        "depot.secret_access_key": "bench",
        "depot.bucket": "bench-uploads",
        "depot.region_name": "us-east-1",
    }
else:
    settings = {"depot.storage_path": os.environ["BENCH_STORAGE"]}
DepotManager.configure("default", settings)


def plain(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    request = webob.Request(environ)
    upload = request.POST["file"]
    file_id = DepotManager.get().create(upload.file, upload.filename)  # type: ignore[union-attr]
    start_response("201 Created", [("Content-Type", "text/plain")])
    return [file_id.encode()]


application = TusWSGIApp(mountpoint="/files", depot="default", fallback=plain)
