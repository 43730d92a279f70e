"""filebox as a Pyramid application.

Run from the repository root: ``python examples/pyramid_app.py`` (after
``pip install pyramid``). The settings (environment variables) are in
``examples/filebox/settings.py``.
"""

from __future__ import annotations

import sys
from typing import Any

import waitress
from filebox import limits, models, page
from filebox.settings import Settings, from_env
from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.response import FileResponse, Response
from sqlalchemy.orm import Session

from depot.manager import DepotManager

TITLE = "filebox (Pyramid)"


def home(request: Request) -> Response:
    return Response(page.render(models.documents(request.db), TITLE))


def upload(request: Request) -> Response:
    status, error = page.receive(request.db, request, request.registry.settings["max_upload"])
    if status == 303:
        return HTTPSeeOther(location=request.route_url("home"))
    return Response(page.render(models.documents(request.db), TITLE, error), status=status)


def favicon(request: Request) -> Response:
    return FileResponse(
        page.FAVICON, request, cache_max_age=page.FAVICON_MAX_AGE, content_type=page.FAVICON_TYPE
    )


def delete(request: Request) -> Response:
    models.delete(request.db, int(request.matchdict["id"]))
    return HTTPSeeOther(location=request.route_url("home"))


def make_app(settings: Settings) -> Any:
    """The Pyramid application, wrapped in DepotMiddleware that serves the files."""
    sessions = models.open_store(settings)

    def db(request: Request) -> Session:
        session = sessions()
        request.add_finished_callback(lambda _: session.close())
        return session

    with Configurator(settings={"max_upload": settings.max_upload}) as config:
        config.add_request_method(db, reify=True)
        config.add_route("home", "/")
        config.add_route("delete", r"/delete/{id:\d+}")
        config.add_view(home, route_name="home", request_method="GET")
        config.add_view(upload, route_name="home", request_method="POST")
        config.add_view(delete, route_name="delete", request_method="POST")
        config.add_route("favicon", "/favicon.ico")
        config.add_view(favicon, route_name="favicon")
        app = config.make_wsgi_app()
    # Files are served at /depot/filebox/<id>: ranges, caching, safe headers.
    return DepotManager.make_middleware(app)


def main() -> None:
    try:
        settings = from_env()
    except ValueError as exc:
        sys.exit(f"pyramid_app: {exc}")
    limit = limits.server_limit(settings.max_upload)
    server = waitress.create_server(
        make_app(settings), host=settings.host, port=settings.port, max_request_body_size=limit
    )
    print(f"filebox (Pyramid) on http://{settings.host}:{server.effective_port}/", flush=True)
    server.run()


if __name__ == "__main__":
    main()
