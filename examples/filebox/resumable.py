"""Resumable uploads: depot's tus server at ``/uploads``, and tus-js-client for the page.

The page sends each new file with tus-js-client in chunks (``PATCH`` requests
of :data:`CHUNK_SIZE` bytes) to :data:`MOUNTPOINT`; an interrupted upload (a
lost network, a restarted server, a closed tab) goes on from the last chunk
the server acknowledged, when the browser retries or when the same file is
chosen again. The chunks live in the depot (``.depot-uploads`` beside the
files), so a restarted app loses none.

Once the last byte is in, the tus server stores the file and calls
:func:`attach`, which makes it a document exactly as a form upload does.

:func:`setup` says whether resumable uploads are on; when they are not (the
script could not be fetched, the depot keeps no chunked uploads), the page
says why and sends files with its plain form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from depot.exceptions import NotAnImageError
from depot.http.request import RequestFacts
from depot.io.interfaces import StoredFile
from depot.manager import DepotManager
from depot.uploads.chunked import UploadStatus
from depot.uploads.tus import TusServer

from . import assets, models
from .settings import DEPOT_NAME, Settings

__all__ = ["CHUNK_SIZE", "MOUNTPOINT", "Resumable", "setup"]

MOUNTPOINT = "/uploads"
#: Bytes per PATCH: what an interruption costs at most. waitress reads a whole
#: request before the app sees it, so a chunk is stored whole or not at all.
CHUNK_SIZE = 8 * 1024 * 1024


@dataclass(frozen=True)
class Resumable:
    """Whether the page uploads with tus-js-client, and what it needs to."""

    #: The tus server, ``None`` when resumable uploads are off.
    server: TusServer | None
    #: tus-js-client's files, ``None`` when resumable uploads are off.
    bundle: assets.Bundle | None
    #: Why they are off, for the page; empty when they are on.
    reason: str = ""

    @property
    def script_url(self) -> str:
        return assets.Bundle.url("tus.min.js")


def setup(settings: Settings, sessions: Callable[[], Session]) -> Resumable:
    """The tus server storing into the app's depot and its script, or why there are none.

    Call it once the depot is configured (:func:`filebox.models.open_store`).
    """
    depot = DepotManager.get(DEPOT_NAME)
    assert depot is not None, "open_store() configures the depot first"
    off = "Resumable uploads are off, files are sent in one request: "
    try:
        # Also removes the chunks of uploads abandoned for a day, as depot advises at start-up.
        depot.expire_uploads()
    except NotImplementedError:
        backend = settings.depot["depot.backend"]
        return Resumable(None, None, f"{off}the {backend} depot keeps no chunked uploads yet.")
    try:
        bundle = assets.load(settings.cache_dir, settings.npm_registry)
    except assets.AssetUnavailable as exc:
        return Resumable(None, None, f"{off}{exc}")

    def attach(stored: StoredFile, upload: UploadStatus, request: RequestFacts) -> None:
        """Make the stored file a new document, as the form's upload does."""
        with sessions() as session:
            try:
                # The column stores its own copy: it checks an image whole and
                # makes its thumbnail, and deletes what it stored if the session
                # rolls back. The tus server's copy then goes.
                models.add(session, stored)
            except NotAnImageError as exc:
                # Forgotten: a resumed upload of the same file starts again, and
                # is refused again, rather than being taken for done.
                depot.abort(upload.upload_id)
                # tus answers the last PATCH 400 with this, which the page shows.
                raise NotAnImageError(models.refusal(stored, exc)) from exc
            except BaseException:
                # Whatever failed (the database), no row has the file: forgotten
                # too, so that the client's retry sends it again instead of
                # hearing from HEAD that it is done.
                depot.abort(upload.upload_id)
                raise
            finally:
                stored.close()
                depot.delete(stored.file_id)

    server = TusServer(
        DEPOT_NAME, mountpoint=MOUNTPOINT, max_size=settings.max_upload, on_complete=attach
    )
    return Resumable(server, bundle)
