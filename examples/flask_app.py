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

New files are sent with tus-js-client to depot's tus server at ``/uploads``, in
chunks, so that an interrupted upload resumes (``examples/filebox/resumable.py``);
the app fetches that script from the npm registry once, checks it and serves it
itself (``examples/filebox/assets.py``). Without it, or without JavaScript, the
page's plain form sends files in one request.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, NoReturn

import waitress
from filebox import assets, limits, models, page, resumable
from filebox.settings import Settings, from_env
from flask import (
    Flask,
    Response,
    abort,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from depot.exceptions import NotAnImageError
from depot.manager import DepotManager
from depot.uploads.tus import TusWSGIApp

__all__ = ["create_app", "main"]


def create_app(settings: Settings | None = None) -> Flask:
    """The Flask app for ``settings`` (default: from the environment)."""
    settings = settings or from_env()
    sessions = models.open_store(settings)
    app = Flask(__name__, template_folder="filebox/templates", static_folder="filebox/static")
    # A longer request is refused from its Content-Length, before its form is read.
    app.config["MAX_CONTENT_LENGTH"] = limits.request_limit(settings.max_upload)
    app.jinja_env.filters["human_size"] = limits.human_size
    # Files are served at /depot/filebox/<id>, ahead of Flask's routing.
    app.wsgi_app = DepotManager.make_middleware(app.wsgi_app)  # type: ignore[method-assign]
    tus = resumable.setup(settings, sessions)
    app.extensions["filebox.resumable"] = tus
    if tus.server is not None:
        # Uploads at /uploads, also ahead of Flask: the tus server reads each
        # chunk from the request itself, with no form parsing and no Flask limit.
        app.wsgi_app = TusWSGIApp(tus.server, fallback=app.wsgi_app)  # type: ignore[method-assign]

    def answer(error: str = "", status: int = 200) -> tuple[str, int]:
        # Errors are answered with the page itself, the message above the list:
        # a form posted without JavaScript shows it, the script reads it from there.
        with sessions() as session:
            documents = models.documents(session)
        html = render_template(
            "index.html",
            documents=documents,
            backend=settings.depot["depot.backend"],
            max_upload=settings.max_upload,
            too_large=limits.too_large_message(settings.max_upload),
            error=error,
            resumable=tus,
            chunk_size=resumable.CHUNK_SIZE,
        )
        return html, status

    def uploads(field: str) -> list[Any]:
        files = [f for f in request.files.getlist(field) if f.filename]
        if not files:
            abort(400, "Choose one or more files to upload.")
        limits.check_size(files, settings.max_upload)
        return files

    @app.errorhandler(HTTPException)
    def error_page(error: HTTPException) -> Any:
        return answer(error.description or error.name, error.code or 500)

    @app.errorhandler(RequestEntityTooLarge)
    @app.errorhandler(limits.UploadTooLarge)
    def too_large(_: Exception) -> Any:
        return answer(limits.too_large_message(settings.max_upload), 413)

    @app.get("/")
    def index() -> Any:
        return answer()

    @app.get("/favicon.ico")
    def favicon() -> Any:
        return send_file(page.FAVICON, mimetype=page.FAVICON_TYPE, max_age=page.FAVICON_MAX_AGE)

    @app.get(assets.Bundle.url("<name>"))
    def asset(name: str) -> Any:
        if tus.bundle is None or name not in tus.bundle.files:
            abort(404, "No such file.")
        response = Response(tus.bundle.files[name], mimetype=tus.bundle.content_type(name))
        response.headers["X-Content-Type-Options"] = "nosniff"
        # The URL names the version: a browser may keep the file for good.
        response.cache_control.public = True
        response.cache_control.max_age = 365 * 24 * 3600
        response.cache_control.immutable = True
        response.add_etag()
        return response.make_conditional(request)

    @app.post("/files")
    def upload() -> Any:
        with sessions() as session:
            refused = models.add_all(session, uploads("files"))
        if refused:
            return answer(" ".join(refused), 422)
        return redirect(url_for("index"), 303)

    @app.post("/files/<int:document_id>/replace")
    def replace(document_id: int) -> Any:
        file = uploads("file")[0]
        with sessions() as session:
            try:
                document = models.replace(session, document_id, file)
            except NotAnImageError as exc:
                return answer(models.refusal(file, exc), 422)
        if document is None:
            no_such_file(document_id)
        return redirect(url_for("index"), 303)

    @app.post("/files/<int:document_id>/delete")
    def delete(document_id: int) -> Any:
        with sessions() as session:
            if not models.delete(session, document_id):
                no_such_file(document_id)
        return redirect(url_for("index"), 303)

    return app


def no_such_file(document_id: int) -> NoReturn:
    abort(404, f"There is no file {document_id}: it may have been deleted. Reload the page.")


def main() -> None:
    """Serve the app with waitress at FILEBOX_HOST:FILEBOX_PORT and print its URL."""
    try:
        settings = from_env()
    except ValueError as exc:
        sys.exit(f"filebox: {exc}")
    app = create_app(settings)
    try:
        server = waitress.create_server(
            app,
            host=settings.host,
            port=settings.port,
            max_request_body_size=limits.server_limit(settings.max_upload),
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
    reason = app.extensions["filebox.resumable"].reason
    if reason:
        print(f"filebox: {reason}", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()


if __name__ == "__main__":
    main()
