"""A small file box on FastAPI: async uploads, a list, files served by depot's ASGI middleware.

Run from the repository root: ``uvicorn examples.fastapi_app:app`` (after
``pip install -e '.[fastapi]'``), then open http://127.0.0.1:8000/. Settings (optional
environment variables): ``FILEBOX_DATA``, the files' directory (default: ``depot-fastapi-example``
in the temporary directory); ``FILEBOX_SIGNING_KEYS``, the private depot's keys, newest first
(default: a key made at start: links die with the process, and differ between workers).
"""

from __future__ import annotations

import contextlib
import html
import os
import secrets
import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from fastapi import FastAPI, HTTPException, Query, UploadFile
from fastapi.responses import HTMLResponse

from depot.io.interfaces import FileStorage, StoredFile
from depot.manager import DepotManager

PUBLIC, PRIVATE = "box", "private"
DATA = Path(tempfile.gettempdir(), "depot-fastapi-example")


class Settings(NamedTuple):
    data_dir: Path
    signing_keys: str


def from_env(environ: Mapping[str, str] = os.environ) -> Settings:
    keys = environ.get("FILEBOX_SIGNING_KEYS") or secrets.token_urlsafe(32)
    return Settings(Path(environ.get("FILEBOX_DATA") or DATA), keys)


def make_app(settings: Settings | None = None) -> Any:
    """Configure the two depots; return the app wrapped in the middleware serving their files."""
    data, keys = settings or from_env()
    public = DepotManager.configure(PUBLIC, {"depot.storage_path": str(data / PUBLIC)})
    signed = {"depot.private": True, "depot.signing_keys": keys}  # 403 unless signed with a key
    private = DepotManager.configure(PRIVATE, {"depot.storage_path": str(data / PRIVATE), **signed})
    api = FastAPI(title="depot on FastAPI")

    @api.get("/files")
    async def list_files() -> list[dict[str, Any]]:
        return [facts(stored) for stored in await stored_files(public)]

    @api.post("/files", status_code=201)
    async def upload(file: UploadFile) -> dict[str, Any]:
        # Starlette spooled it to a temporary file; acreate copies it in blocks, in a thread.
        async with await public.aget(await public.acreate(file)) as stored:
            return facts(stored)

    @api.delete("/files/{file_id}", status_code=204)
    async def delete(file_id: str) -> None:
        await public.adelete(await found(public, file_id))

    @api.post("/private", status_code=201)
    async def upload_private(file: UploadFile) -> dict[str, str]:
        file_id = await private.acreate(file)
        return {"id": file_id, "link": f"/private/{file_id}/link"}

    @api.get("/private/{file_id}/link")
    async def link(file_id: str, expires_in: int = Query(300, ge=1, le=86400)) -> dict[str, Any]:
        # An app with users checks here that the one asking may read the file.
        path = f"{PRIVATE}/{await found(private, file_id)}"
        return {"url": DepotManager.url_for(path, expires_in=expires_in), "expires_in": expires_in}

    @api.get("/", response_class=HTMLResponse)
    async def page() -> str:
        items = "".join(
            f'<li><a href="{html.escape(f["url"])}">{html.escape(f["name"] or f["id"])}</a>'
            f" ({f['size']} bytes)</li>"
            for f in map(facts, await stored_files(public))
        )
        head = '<!doctype html><title>depot on FastAPI</title><a href="/docs">API and upload</a>'
        return f"{head}<ul>{items}</ul>"

    # Files are served at /depot/<depot>/<id>: ranges, caching, safe headers.
    return DepotManager.make_asgi_middleware(api)


async def stored_files(depot: FileStorage) -> list[StoredFile]:
    """The depot's files, newest first (facts read, each closed; any deleted meanwhile left out)."""
    files = []
    for file_id in await depot.alist():
        with contextlib.suppress(FileNotFoundError):
            async with await depot.aget(file_id) as stored:
                files.append(stored)
    return sorted(files, key=lambda stored: stored.last_modified or datetime.min, reverse=True)


async def found(depot: FileStorage, file_id: str) -> str:
    """``file_id`` if it names a file of ``depot``; else a 404 (a malformed id names none)."""
    with contextlib.suppress(ValueError):
        if await depot.aexists(file_id):
            return file_id
    raise HTTPException(404, "No such file.")


def facts(stored: StoredFile) -> dict[str, Any]:
    url = DepotManager.url_for(f"{PUBLIC}/{stored.file_id}")
    size, kind = stored.content_length, stored.content_type
    return {"id": stored.file_id, "name": stored.filename, "type": kind, "size": size, "url": url}


def __getattr__(name: str) -> Any:
    # `uvicorn examples.fastapi_app:app` asks for `app`: it is built then, from
    # the environment, so importing this module (as tests do) configures nothing.
    if name == "app":
        globals()["app"] = built = make_app()
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
