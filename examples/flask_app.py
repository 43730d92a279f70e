"""filebox: a Flask app that stores, lists, serves, replaces and deletes files with depot.

Run from the repository root: ``python examples/flask_app.py``, then open the
URL it prints (http://127.0.0.1:8080/). Files go to ``examples/data`` unless the
environment says otherwise (``DEPOT_BACKEND=s3`` and the like, see
``examples/filebox/settings.py``).

The app handles the pages and forms; depot does the rest. Files are stored
through a SQLAlchemy column (``examples/filebox/models.py``) and served by
DepotMiddleware at ``/depot/filebox/<id>``, with ranges (a video seeks),
caching, and safe headers: an uploaded HTML page is a download, never a page of
this site.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import waitress
from filebox import models
from filebox.page import human_size
from filebox.settings import Settings, from_env
from flask import Flask, abort, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from depot.manager import DepotManager

__all__ = ["create_app", "main"]


def create_app(settings: Settings | None = None) -> Flask:
    """The Flask app for ``settings`` (default: from the environment)."""
    settings = settings or from_env()
    sessions = models.open_store(settings)
    app = Flask(__name__, template_folder="filebox/templates", static_folder="filebox/static")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload
    app.jinja_env.filters["human_size"] = human_size
    # Files are served at /depot/filebox/<id>, ahead of Flask's routing.
    app.wsgi_app = DepotManager.make_middleware(app.wsgi_app)  # type: ignore[method-assign]

    def uploads(field: str) -> list[Any]:
        files = [f for f in request.files.getlist(field) if f.filename]
        if not files:
            abort(400, "Choose one or more files to upload.")
        return files

    @app.errorhandler(HTTPException)
    def plain_error(error: HTTPException) -> Any:
        # Plain text, which the page's script shows as it is when an upload fails.
        text = f"{error.name}: {error.description}"
        return text, error.code or 500, {"Content-Type": "text/plain; charset=utf-8"}

    @app.get("/")
    def index() -> str:
        with sessions() as session:
            documents = models.documents(session)
        backend = settings.depot["depot.backend"]
        return render_template("index.html", documents=documents, backend=backend)

    @app.post("/files")
    def upload() -> Any:
        with sessions() as session:
            for file in uploads("files"):
                models.add(session, file)
        return redirect(url_for("index"), 303)

    @app.post("/files/<int:document_id>/replace")
    def replace(document_id: int) -> Any:
        with sessions() as session:
            if models.replace(session, document_id, uploads("file")[0]) is None:
                abort(404)
        return redirect(url_for("index"), 303)

    @app.post("/files/<int:document_id>/delete")
    def delete(document_id: int) -> Any:
        with sessions() as session:
            if not models.delete(session, document_id):
                abort(404)
        return redirect(url_for("index"), 303)

    return app


def main() -> None:
    """Serve the app with waitress at FILEBOX_HOST:FILEBOX_PORT and print its URL."""
    try:
        settings = from_env()
    except ValueError as exc:
        sys.exit(f"filebox: {exc}")
    app = create_app(settings)
    try:
        server = waitress.create_server(
            app, host=settings.host, port=settings.port, max_request_body_size=settings.max_upload
        )
    except OSError as exc:
        sys.exit(
            f"filebox: cannot listen on {settings.host}:{settings.port} ({exc.strerror}). "
            "Set FILEBOX_PORT to a free port."
        )
    url = f"http://{settings.host}:{server.effective_port}/"
    depot = settings.depot
    where = depot.get("depot.storage_path") or f"S3 bucket {depot.get('depot.bucket')}"
    print(f"filebox is running on {url}  (files in {where}; Ctrl-C stops it)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()


if __name__ == "__main__":
    main()
