"""The ASGI application the end-to-end tests run under real servers.

The twin of tests/wsgi_app.py, with the same settings from the environment:
``DEPOT_TEST_STORAGE`` (a local storage path, required) and
``DEPOT_TEST_OFFLOAD`` (an ``offload`` value, optional).
"""

from __future__ import annotations

import os
from typing import Any

from depot.manager import DepotManager


async def _fallback(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        # Answered, so that the servers run the middleware's own lifespan path
        # instead of logging that the application has none.
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"not a depot URL"})


DepotManager.configure("default", {"depot.storage_path": os.environ["DEPOT_TEST_STORAGE"]})
application = DepotManager.make_asgi_middleware(
    _fallback, offload=os.environ.get("DEPOT_TEST_OFFLOAD") or None
)
