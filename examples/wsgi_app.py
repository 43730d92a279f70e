"""filebox as a plain WSGI application: webob for requests, no framework.

Run from the repository root: ``python examples/wsgi_app.py``. The settings
(environment variables) are in ``examples/filebox/settings.py``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from typing import Any
from wsgiref.simple_server import make_server

from filebox import models, page
from filebox.settings import Settings, from_env
from sqlalchemy.orm import Session
from webob import Request, Response
from webob.exc import HTTPNotFound, HTTPSeeOther

from depot.manager import DepotManager

TITLE = "filebox (plain WSGI)"
DELETE = re.compile(r"/delete/(\d+)")


def make_app(settings: Settings) -> Any:
    """The WSGI application, wrapped in DepotMiddleware that serves the files."""
    sessions = models.open_store(settings)

    def respond(request: Request, session: Session) -> Response:
        if request.path_info == "/" and request.method == "GET":
            return Response(page.render(models.documents(session), TITLE))
        if request.path_info == "/" and request.method == "POST":
            status, error = page.receive(session, request, settings.max_upload)
            if status == 303:
                return HTTPSeeOther(location="/")
            return Response(page.render(models.documents(session), TITLE, error), status=status)
        if request.path_info == "/favicon.ico":
            icon = page.FAVICON.read_bytes()
            cache = f"max-age={page.FAVICON_MAX_AGE}"
            return Response(icon, content_type=page.FAVICON_TYPE, cache_control=cache)
        match = DELETE.fullmatch(request.path_info)
        if match and request.method == "POST":
            models.delete(session, int(match[1]))
            return HTTPSeeOther(location="/")
        return HTTPNotFound()

    def application(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        with sessions() as session:
            response = respond(request, session)
        return response(environ, start_response)

    # Files are served at /depot/filebox/<id>: ranges, caching, safe headers.
    return DepotManager.make_middleware(application)


def main() -> None:
    try:
        settings = from_env()
    except ValueError as exc:
        sys.exit(f"wsgi_app: {exc}")
    with make_server(settings.host, settings.port, make_app(settings)) as server:
        print(f"filebox (plain WSGI) on http://{settings.host}:{server.server_port}/", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
