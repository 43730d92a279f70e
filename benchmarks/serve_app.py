"""The WSGI application ``benchmarks/serve.py`` runs under gunicorn, for depot and filedepot 0.12.

It imports whichever ``depot`` the interpreter finds, so it must stay valid for both:
no depot-only keyword unless asked for. Settings come from the environment:
``BENCH_STORAGE`` (local storage path), ``BENCH_DEPOT_UNDER`` (the directory the
imported ``depot`` must live in) and ``BENCH_OFFLOAD`` (depot only, optional).

With ``BENCH_MODE=hello`` it imports no depot and serves :func:`hello` instead: the
fastest a WSGI app can be, which measures what gunicorn alone allows. With
``BENCH_MODE=asgi`` ``application`` is depot's ASGI middleware (``depot.asgi``, depot
only) over a 404; with ``BENCH_MODE=starlette`` it is Starlette's ``StaticFiles``
serving ``BENCH_STATIC``, what an ASGI application would use instead of depot.

Run as a script with file paths as arguments, it stores them in that depot instead and
prints their ids as a JSON list, so each project writes its own store.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def _fixed(size: int) -> tuple[bytes, str, list[tuple[str, str]]]:
    """A body of ``size`` bytes, its ETag and the headers of a 200 carrying it."""
    etag = f'"hello-{size}"'
    headers = [
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", str(size)),
        ("ETag", etag),
    ]
    return b"x" * size, etag, headers


_HELLO_1K = _fixed(1024)
_HELLO = {"/64k": _fixed(64 * 1024)}


def hello(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Answer from memory: 64 KiB for ``/64k``, 1 KiB for any other path.

    A 304 with no body when If-None-Match is exactly that body's ETag, so that
    ``serve.py``'s revalidation workload runs against it unchanged.
    """
    body, etag, headers = _HELLO.get(environ.get("PATH_INFO", ""), _HELLO_1K)
    if environ.get("HTTP_IF_NONE_MATCH") == etag:
        start_response("304 Not Modified", [("ETag", etag)])
        return []
    start_response("200 OK", list(headers))
    return [body]


def _fallback(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not a depot URL"]


def configure_depot() -> None:
    """Configure the depot 'default' on ``BENCH_STORAGE``, from the expected checkout."""
    import depot
    from depot.manager import DepotManager

    # Both projects install the package 'depot': a stray PYTHONPATH or cwd would silently
    # benchmark the wrong one, so refuse to start instead.
    expected = Path(os.environ["BENCH_DEPOT_UNDER"]).resolve()
    if not Path(depot.__file__).resolve().is_relative_to(expected):
        raise RuntimeError(f"imported depot from {depot.__file__}, expected it under {expected}")

    DepotManager.configure("default", {"depot.storage_path": os.environ["BENCH_STORAGE"]})


def depot_app() -> WSGIApplication:
    """depot's WSGI middleware over the depot 'default' on ``BENCH_STORAGE``."""
    from depot.manager import DepotManager

    configure_depot()
    offload = os.environ.get("BENCH_OFFLOAD")
    if offload:
        return DepotManager.make_middleware(_fallback, offload=offload)
    return DepotManager.make_middleware(_fallback)


async def _fallback_asgi(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b"not a depot URL"})


def depot_asgi_app() -> Any:
    """depot's ASGI middleware over the depot 'default' on ``BENCH_STORAGE``."""
    from depot.manager import DepotManager

    configure_depot()
    return DepotManager.make_asgi_middleware(_fallback_asgi)  # type: ignore[attr-defined]


def starlette_app() -> Any:
    from starlette.staticfiles import StaticFiles

    return StaticFiles(directory=os.environ["BENCH_STATIC"])


MODE = os.environ.get("BENCH_MODE", "wsgi")
APPS = {
    "hello": lambda: hello,
    "wsgi": depot_app,
    "asgi": depot_asgi_app,
    "starlette": starlette_app,
}
application = APPS[MODE]()


if __name__ == "__main__":
    if MODE != "wsgi":
        sys.exit(f"BENCH_MODE={MODE} is not for storing files; unset it")
    from depot.manager import DepotManager  # configured by depot_app() above

    ids = []
    storage = DepotManager.get("default")
    assert storage is not None  # configured above
    for name in sys.argv[1:]:
        with open(name, "rb") as f:
            ids.append(storage.create(f, filename=os.path.basename(name)))
    print(json.dumps(ids))
