"""The WSGI application the end-to-end tests run under real servers.

Settings come from the environment: ``DEPOT_TEST_STORAGE`` (a local storage
path, required) and ``DEPOT_TEST_OFFLOAD`` (an ``offload`` value, optional).
"""

from __future__ import annotations

import os

from depot.manager import DepotManager


def _fallback(environ, start_response):
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not a depot URL"]


DepotManager.configure("default", {"depot.storage_path": os.environ["DEPOT_TEST_STORAGE"]})
application = DepotManager.make_middleware(
    _fallback, offload=os.environ.get("DEPOT_TEST_OFFLOAD") or None
)
