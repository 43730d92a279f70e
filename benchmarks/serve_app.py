"""The WSGI application ``benchmarks/serve.py`` runs under gunicorn, for depot and filedepot 0.12.

It imports whichever ``depot`` the interpreter finds, so it must stay valid for both:
no depot-only keyword unless asked for. Settings come from the environment:
``BENCH_STORAGE`` (local storage path), ``BENCH_DEPOT_UNDER`` (the directory the
imported ``depot`` must live in) and ``BENCH_OFFLOAD`` (depot only, optional).

Run as a script with file paths as arguments, it stores them in that depot instead and
prints their ids as a JSON list, so each project writes its own store.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import depot
from depot.manager import DepotManager

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

# Both projects install the package 'depot': a stray PYTHONPATH or cwd would silently
# benchmark the wrong one, so refuse to start instead.
_expected = Path(os.environ["BENCH_DEPOT_UNDER"]).resolve()
if not Path(depot.__file__).resolve().is_relative_to(_expected):
    raise RuntimeError(f"imported depot from {depot.__file__}, expected it under {_expected}")


def _fallback(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not a depot URL"]


DepotManager.configure("default", {"depot.storage_path": os.environ["BENCH_STORAGE"]})
_offload = os.environ.get("BENCH_OFFLOAD")
if _offload:
    application = DepotManager.make_middleware(_fallback, offload=_offload)
else:
    application = DepotManager.make_middleware(_fallback)


if __name__ == "__main__":
    ids = []
    storage = DepotManager.get("default")
    assert storage is not None  # configured above
    for name in sys.argv[1:]:
        with open(name, "rb") as f:
            ids.append(storage.create(f, filename=os.path.basename(name)))
    print(json.dumps(ids))
