"""Direct uploads to a GCS bucket: a V4 signed PUT, then the check of what arrived.

The client PUTs the file at a signed URL to a staging object,
``<prefix>.depot-uploads/<file id>``, which ``list()`` does not show and no
file id reaches. The signature fixes the object's name and ``Content-Type``
and, when the upload has a largest size, GCS's ``x-goog-content-length-range``
header, so GCS itself refuses a larger body. ``complete_upload()`` checks the
object (see :mod:`depot.uploads.direct`), writes depot's metadata on it, and
rewrites it server-side to the file's name; the file exists only once it passed.

The object may be sent again while it is checked (the signed URL stays valid
until it expires): each step after the first look is pinned to the
generation (GCS's version) seen then, and the copy's CRC32C must be the one of
the bytes checked, so what is stored is what was checked even on a server that
ignores the preconditions.
"""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import google_crc32c
from google.api_core.exceptions import NotFound, PreconditionFailed

from depot._headers import DEFAULT_FILENAME
from depot.exceptions import UploadNotFound, ValidationError
from depot.io._gcserrors import gcs_errors
from depot.io._objectmeta import CHECKSUM
from depot.uploads.direct import (
    STAGING,
    ArrivedBytes,
    DirectUpload,
    check_bytes,
    check_size,
    make_token,
    plan_upload,
    read_token,
)

if TYPE_CHECKING:
    from depot.io.gcs import GCSStorage

_LOST = (NotFound, PreconditionFailed)
#: Tries at storing the bytes checked while other completes of the token race this one.
_TRIES = 4


def presign(
    storage: GCSStorage,
    filename: str | None,
    content_type: str | None,
    max_size: int | None,
    checksum: str | None,
    expires_in: int,
    method: str,
) -> DirectUpload:
    """A V4 signed PUT of one new file, and its token."""
    if method != "PUT":
        raise ValueError(f"method is 'PUT' for a GCS depot (the file as the body), not {method!r}.")
    planned = plan_upload(storage, filename, content_type, max_size, checksum, expires_in)
    credentials = storage._signing_credentials()
    key = staging_key(storage, planned.file_id)
    # Signed headers the client must send as they are: GCS refuses the PUT
    # otherwise, and a body outside the range with a 400.
    headers = {"Content-Type": planned.content_type}
    if planned.limit is not None:
        headers["x-goog-content-length-range"] = f"0,{planned.limit}"
    with gcs_errors(storage._where, f"signing an upload to {key}"):
        url: str = storage.bucket.blob(key).generate_signed_url(
            version="v4",
            expiration=timedelta(seconds=expires_in),
            method="PUT",
            content_type=planned.content_type,
            headers={k: v for k, v in headers.items() if k != "Content-Type"},
            credentials=credentials,
        )
    payload = {"b": storage.bucket.name, "k": key, "f": planned.file_id, "n": filename,
               "t": planned.content_type, "m": planned.limit, "c": checksum,
               "e": planned.expires_at}  # fmt: skip
    token = make_token(storage.signing_keys, payload)
    return DirectUpload("PUT", url, token, planned.file_id, planned.expires_at, {}, headers)


def complete(storage: GCSStorage, token: str) -> str:
    """Check the object a signed PUT sent, make it a stored file; return its id."""
    payload = read_token(storage.signing_keys, token)
    file_id: str = payload["f"]
    key = staging_key(storage, file_id)
    if payload["b"] != storage.bucket.name or payload["k"] != key:
        raise UploadNotFound("This upload token is for another depot.")
    if storage._stat(file_id) is not None:
        return file_id  # completed already (a client that lost the answer asks again)
    where, request = storage._where, storage._request
    with gcs_errors(where, f"reading the upload {key}"):
        staged = storage.bucket.get_blob(key, **request)
    if staged is None:
        if storage._stat(file_id) is not None:
            # Another complete_upload() of this token finished meanwhile (it
            # deletes the staged object last): the file is there, it is the answer.
            return file_id
        raise UploadNotFound(
            "Nothing has arrived for this upload yet: send the file, then complete it."
        )
    changed = UploadNotFound(
        "The upload changed while it was checked (it was sent again): complete it again."
    )
    # Kept here: a download sets the blob's generation from the answer's headers
    # (to None from a server that sends none).
    generation, metageneration = staged.generation, staged.metageneration
    try:
        check_size(payload, int(staged.size or 0))
        arrived = CRCBytes()
        try:
            with gcs_errors(where, f"reading the upload {key}", _LOST):
                # The bytes as stored (raw), which are what the copy holds.
                staged.download_to_file(
                    arrived, if_generation_match=generation, raw_download=True, **request
                )
        except _LOST:
            raise changed from None
        check_bytes(storage.policy, payload, arrived)
    except ValidationError:
        _delete(storage, key, generation, f"deleting the refused upload {key}")
        raise
    name = payload["n"] or DEFAULT_FILENAME
    for _ in range(_TRIES):
        try:
            copied = store_checked(
                storage, staged, (generation, metageneration), file_id, name, payload["t"],
                arrived.checksum,
            )  # fmt: skip
            break
        except (PreconditionFailed, NotFound):
            # Another complete of this token stored the file, or is storing it
            # (it changed the staged object's metadata), or the bytes changed.
            if storage._stat(file_id) is not None:
                return file_id
            with gcs_errors(where, f"reading the upload {key}"):
                now = storage.bucket.get_blob(key, **request)
            if now is None and storage._stat(file_id) is not None:
                return file_id  # stored, then the staged object deleted, meanwhile
            if now is None or now.generation != generation:
                raise changed from None
            # The bytes checked, with the metadata of the other complete: again.
            staged, metageneration = now, now.metageneration
    else:
        raise changed
    if int(copied.size or 0) != arrived.size or copied.crc32c != arrived.crc32c:
        # Not the bytes checked (a server that ignores the preconditions): the
        # file must not exist unchecked. Deleted; completing again checks anew.
        storage._delete(file_id)
        raise changed
    _delete(storage, key, generation, f"deleting the staged upload {key}")
    return file_id


def store_checked(
    storage: GCSStorage,
    staged: Any,
    version: tuple[Any, Any],
    file_id: str,
    filename: str,
    content_type: str,
    checksum: str,
) -> Any:
    """Rewrite a staged object, if still the generation checked, as the new file; its blob.

    The caller compares the result's size and CRC32C with the bytes it checked.

    :param staged: the staged object's blob.
    :param version: the generation and metageneration of the staged object checked.
    :param checksum: ``"sha256:<hex>"`` of the bytes checked.
    :raises PreconditionFailed: the staged object changed, or the file exists.
    :raises NotFound: the staged object is gone.
    """
    where, request = storage._where, storage._request
    target = storage._new_blob(file_id, filename, content_type)
    target.metadata = {**target.metadata, CHECKSUM: checksum}
    with gcs_errors(where, f"storing the upload {staged.name} as file {file_id}", _LOST):
        # The metadata goes on the staged object first, pinned to what was
        # checked: a rewrite then carries it whether or not the server applies
        # the destination's metadata (GCS does; emulators may not).
        staged.content_type = target.content_type
        staged.content_disposition = target.content_disposition
        staged.metadata = target.metadata
        staged.patch(if_generation_match=version[0], if_metageneration_match=version[1], **request)
        rewrite_token = None
        while True:
            # Server-side: the bytes do not come through here again. A rewrite
            # of a large object may take several calls, each with the token of the last.
            rewrite_token, _, _ = target.rewrite(
                staged,
                token=rewrite_token,
                if_generation_match=0,  # a new file: never over another one
                if_source_generation_match=version[0],
                # The patch above made the next metageneration, unless another did.
                if_source_metageneration_match=staged.metageneration,
                **request,
            )
            if rewrite_token is None:
                return target


def _delete(storage: GCSStorage, key: str, generation: int | None, action: str) -> None:
    """Delete the staged object if it is still ``generation``: a new one sent meanwhile stays."""
    try:
        with gcs_errors(storage._where, action, _LOST):
            storage.bucket.blob(key).delete(if_generation_match=generation, **storage._request)
    except _LOST:
        pass


class CRCBytes(ArrivedBytes):
    """:class:`ArrivedBytes` with the CRC32C GCS keeps of an object, as base64."""

    def __init__(self) -> None:
        super().__init__()
        self._crc = google_crc32c.Checksum()

    def write(self, block: bytes) -> int:
        self._crc.update(block)
        return super().write(block)

    @property
    def crc32c(self) -> str:
        return base64.b64encode(self._crc.digest()).decode("ascii")


def staging_key(storage: GCSStorage, file_id: str) -> str:
    return f"{storage._prefix}{STAGING}{file_id}"
