"""A tus endpoint over a local depot, for the real-server tests (gunicorn, uvicorn).

Reads ``DEPOT_TEST_STORAGE``; each finished upload's file id is appended to
``<storage>.done``, one per line, by the completion callback, whichever worker
finished it.
"""

from __future__ import annotations

import os
from typing import Any

from depot.manager import DepotManager
from depot.uploads.tus import TusASGIApp, TusServer, TusWSGIApp

STORAGE = os.environ["DEPOT_TEST_STORAGE"]
DepotManager.configure("default", {"depot.storage_path": STORAGE})


def _done(stored: Any, status: Any, request: Any) -> None:
    with open(STORAGE + ".done", "a") as f:
        f.write(f"{stored.file_id} {os.getpid()}\n")


server = TusServer("default", mountpoint="/files", on_complete=_done)
application = TusWSGIApp(server)
asgi_application = TusASGIApp(server)
