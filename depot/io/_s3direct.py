"""Direct uploads to an S3 bucket: a presigned POST or PUT, then the check of what arrived.

The client sends the file to a staging key, ``<prefix>.depot-uploads/<file id>``,
which ``list()`` does not show and no file id reaches; ``complete_upload()``
checks it there and copies it, server-side, to the file's key with depot's
metadata, so a file exists only once it passed (see :mod:`depot.uploads.direct`).

A chunked upload ends the same way: its multipart upload is completed at
``<prefix>.depot-uploads/<upload id>`` (see :mod:`depot.uploads._s3`), then
:func:`store_staged` checks it and makes it a file, as for a presigned upload.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from depot._headers import DEFAULT_FILENAME
from depot.exceptions import (
    ChecksumMismatch,
    DepotError,
    SizeMismatch,
    UploadNotFound,
    UploadTooLarge,
    ValidationError,
)
from depot.io._chunks import BLOCK_SIZE
from depot.io._fileinfo import resolve
from depot.io._objectmeta import CHECKSUM
from depot.io._s3errors import s3_errors
from depot.uploads.direct import (
    STAGING,
    DirectUpload,
    check_arrived,
    make_token,
    plan_upload,
    read_token,
)

if TYPE_CHECKING:
    from depot.io.boto3 import S3Storage
    from depot.uploads._s3 import S3Staging

#: The largest object S3 copies in one CopyObject request (5 GiB); larger ones go in parts.
MAX_COPY_OBJECT = 5 * 2**30


def presign(
    storage: S3Storage,
    filename: str | None,
    content_type: str | None,
    max_size: int | None,
    checksum: str | None,
    expires_in: int,
    method: str,
) -> DirectUpload:
    """A presigned POST or PUT of one new file, and its token."""
    if method not in ("POST", "PUT"):
        raise ValueError(f"method is 'POST' (a form) or 'PUT' (a body), not {method!r}.")
    planned = plan_upload(storage, filename, content_type, max_size, checksum, expires_in)
    file_id, ctype, limit, expires_at = (
        planned.file_id,
        planned.content_type,
        planned.limit,
        planned.expires_at,
    )
    key = staging_key(storage, file_id)
    client, bucket = storage._client, storage._bucket
    fields: dict[str, str] = {}
    headers: dict[str, str] = {}
    with s3_errors(storage._where, f"presigning an upload to {key}"):
        if method == "POST":
            conditions: list[Any] = [{"Content-Type": ctype}]
            if limit is not None:
                conditions.append(["content-length-range", 0, limit])
            post = client.generate_presigned_post(
                Bucket=bucket,
                Key=key,
                Fields={"Content-Type": ctype},
                Conditions=conditions,
                ExpiresIn=expires_in,
            )
            url, fields = post["url"], dict(post["fields"])
        else:
            url = client.generate_presigned_url(
                "put_object",
                Params={"Bucket": bucket, "Key": key, "ContentType": ctype},
                ExpiresIn=expires_in,
            )
            headers = {"Content-Type": ctype}
    payload = {"b": bucket, "k": key, "f": file_id, "n": filename, "t": ctype,
               "m": limit, "c": checksum, "e": expires_at}  # fmt: skip
    token = make_token(storage.signing_keys, payload)
    return DirectUpload(method, url, token, file_id, expires_at, fields, headers)


def complete(storage: S3Storage, token: str) -> str:
    """Check the object a presigned upload sent, make it a stored file; return its id."""
    payload = read_token(storage.signing_keys, token)
    file_id: str = payload["f"]
    key = staging_key(storage, file_id)
    if payload["b"] != storage._bucket or payload["k"] != key:
        raise UploadNotFound("This upload token is for another depot.")
    expected = Expected(
        filename=payload["n"],
        content_type=payload["t"],
        checksum=payload["c"],
        limit=payload["m"],
        checks=tuple(storage.policy),
        missing="Nothing has arrived for this upload yet: send the file, then complete it.",
        mismatch="The file that arrived has the checksum {found}, not the one the upload was "
        "presigned with: upload it again.",
        # The presigned request stays valid: the next try sends the file anew.
        delete_refused=True,
    )
    return store_staged(storage, key, file_id, expected)


@dataclass(frozen=True)
class Expected:
    """What a staged object must be to become a stored file, and what to say if it is not.

    :param checksum: ``"sha256:<hex>"`` or ``"md5:<hex>"`` of its bytes, if known.
    :param limit: its largest size, besides the ``checks``' own.
    :param size: its exact size, if known.
    :param checks: the depot's policy and any other validators.
    :param missing: the message when nothing is staged.
    :param mismatch: the message when the checksum differs; ``{found}`` is the one found.
    :param delete_refused: delete the staged object when a check refuses it
        (else it stays, to be checked again or removed by its owner).
    """

    filename: str | None
    content_type: str
    checksum: str | None
    limit: int | None
    checks: tuple[Any, ...]
    missing: str
    mismatch: str
    delete_refused: bool
    size: int | None = None


def store_staged(storage: S3Storage, key: str, file_id: str, expected: Expected) -> str:
    """Check the object staged at ``key``, then copy it to file ``file_id``'s key; return the id.

    The one way a staged object (a presigned upload, a completed chunked
    upload) becomes a stored file: the file does not exist under its id before
    its bytes passed every check, and these are read again on each call, never
    taken from an earlier one. A file already there is the answer (an earlier
    call stored it, and only the staged object may be left to delete).
    """
    client, bucket = storage._client, storage._bucket
    where = storage._where
    if storage._stat(file_id) is not None:
        # Stored already (a client that lost the answer asks again, or a call
        # that died before deleting the staged object).
        with s3_errors(where, f"deleting the staged upload {key}"):
            client.delete_object(Bucket=bucket, Key=key)
        return file_id
    try:
        with s3_errors(where, f"reading the upload {key}", passthrough=("404", "NoSuchKey")):
            body = client.get_object(Bucket=bucket, Key=key)
    except DepotError:
        raise
    except ClientError:  # 404: nothing arrived
        if storage._stat(file_id) is not None:
            # Another call stored it meanwhile (it deletes the staged key last):
            # the file is there, it is the answer.
            return file_id
        raise UploadNotFound(expected.missing) from None
    size = int(body["ContentLength"])
    # A presigned request stays valid until it expires: the client may send
    # other bytes to the staging key while these are checked. The copy is of
    # this version only (S3 refuses it otherwise), and is checked after.
    etag = body.get("ETag")
    try:
        checksum = _check(storage, key, body, size, expected)
    except ValidationError:
        if expected.delete_refused:
            with s3_errors(where, f"deleting the refused upload {key}"):
                client.delete_object(Bucket=bucket, Key=key)
        raise
    args = storage._object_args(expected.filename or DEFAULT_FILENAME, expected.content_type)
    args["Metadata"][CHECKSUM] = checksum
    changed = UploadNotFound(
        "The upload changed while it was checked (it was sent again): complete it again."
    )
    try:
        with s3_errors(
            where,
            f"storing the upload {key} as file {file_id}",
            passthrough=("412", "PreconditionFailed"),
        ):
            copied = _copy(storage, key, file_id, etag, args, size)
    except DepotError:
        raise
    except ClientError:  # 412: not the version checked
        raise changed from None
    if _changed(etag, copied.get("ETag"), size, int(copied["ContentLength"])):
        # Not the bytes checked (a server that ignores CopySourceIfMatch): the
        # file must not exist unchecked. Deleted; completing again checks anew.
        with s3_errors(where, f"deleting the unchecked copy of {key}"):
            client.delete_object(Bucket=bucket, Key=storage._key(file_id))
        raise changed
    with s3_errors(where, f"deleting the staged upload {key}"):
        client.delete_object(Bucket=bucket, Key=key)
    return file_id


def _check(storage: S3Storage, key: str, body: Any, size: int, expected: Expected) -> str:
    """Read the staged object once and check it; return its sha256 checksum.

    :raises depot.exceptions.ValidationError: a check refuses it.
    """
    from depot.validators import SNIFF_BYTES, too_large

    limits = [c.max_size for c in expected.checks if getattr(c, "max_size", None) is not None]
    if expected.limit is not None:
        limits.append(expected.limit)
    if limits and size > min(limits):
        # Refused by its size before a byte is read: a PUT's signature does not
        # bound it, and reading gigabytes to refuse them is for nothing.
        body["Body"].close()
        raise UploadTooLarge(str(too_large(min(limits))), min(limits))
    if expected.size is not None and size != expected.size:
        body["Body"].close()
        raise SizeMismatch(
            f"The upload assembled in the bucket has {size} bytes, not the {expected.size} "
            "reserved: abort it and upload again."
        )
    digest, head = hashlib.sha256(), b""
    # md5 only when the upload was reserved with one: a second hash costs time.
    other = hashlib.md5() if (expected.checksum or "").startswith("md5:") else None
    with s3_errors(storage._where, f"reading the upload {key}"):
        stream = body["Body"]
        try:
            while block := stream.read(BLOCK_SIZE):
                if len(head) < SNIFF_BYTES:
                    head += block[: SNIFF_BYTES - len(head)]
                digest.update(block)
                if other is not None:
                    other.update(block)
        finally:
            stream.close()
    checksum = f"sha256:{digest.hexdigest()}"
    found = checksum if other is None else f"md5:{other.hexdigest()}"
    if expected.checksum is not None and expected.checksum != found:
        raise ChecksumMismatch(expected.mismatch.format(found=found))
    check_arrived(
        expected.checks, expected.filename, expected.content_type, head, size, expected.limit
    )
    return checksum


def store_reserved(
    storage: S3Storage,
    upload_id: str,
    file_id: str,
    staging: S3Staging,
    record: dict[str, Any],
    validators: list[Any],
) -> str:
    """Finalize a chunked upload: complete its multipart upload, then :func:`store_staged`.

    The bytes are put together by S3 and read once, for the checks. The
    file's id is the one the first finalize of the upload chose, whichever
    call this is: a finalize that died midway leaves no second file.
    """
    target = staging.target(upload_id, file_id)
    staging.complete(upload_id, record)
    _, filename, ctype = resolve(b"", record.get("filename"), record.get("content_type"))
    checksum = record.get("checksum")
    algorithm = (checksum or ":").split(":")[0]
    expected = Expected(
        filename=filename,
        content_type=ctype,
        checksum=checksum,
        limit=None,
        checks=(*storage.policy, *validators),
        size=int(record["size"]),
        missing=f"The bytes of upload {upload_id} are not in the {storage._where}: it was "
        "aborted or expired meanwhile. Reserve a new one.",
        mismatch=f"The upload's bytes have the {algorithm} {{found}}, not the {checksum} it "
        "was reserved with: a chunk was sent wrong. Abort it and upload again.",
        # As on every backend, a refused upload stays until it is aborted or
        # expires: another finalize (with other validators) may accept it.
        delete_refused=False,
    )
    return store_staged(storage, staging.staged_key(upload_id), target, expected)


def _copy(
    storage: S3Storage, key: str, file_id: str, etag: str | None, args: dict[str, Any], size: int
) -> Any:
    """Copy the staged object, if it is still version ``etag``, to the file's key; head it."""
    client, bucket = storage._client, storage._bucket
    # Server-side: the bytes do not come through here again. S3 refuses the
    # copy (412) if the object is no longer the one read and checked.
    pinned = {"CopySourceIfMatch": etag} if etag else {}
    source = {"Bucket": bucket, "Key": key}
    extra = {**args, **pinned, "MetadataDirective": "REPLACE"}
    if size <= MAX_COPY_OBJECT:
        # One request, which keeps the ETag (so _changed compares it): boto3's
        # managed copy goes in parts from 8 MiB, several times slower for the
        # same bytes (256 MiB on moto: 6.8 s against 1.1 s).
        client.copy_object(CopySource=source, Bucket=bucket, Key=storage._key(file_id), **extra)
    else:
        client.copy(source, bucket, storage._key(file_id), ExtraArgs=extra)
    return client.head_object(Bucket=bucket, Key=storage._key(file_id))


def _changed(checked: str | None, copied: str | None, size: int, copied_size: int) -> bool:
    """Whether the copy is not of the object checked, as far as S3 tells.

    A copy in one request keeps the source's ETag; one in parts (over boto3's
    threshold) makes another ("<md5>-<parts>"), and only its size is compared.
    """
    if copied_size != size:
        return True
    if checked and copied and "-" not in copied and "-" not in checked:
        return copied != checked
    return False


def staging_key(storage: S3Storage, file_id: str) -> str:
    return f"{storage._prefix}{STAGING}{file_id}"
