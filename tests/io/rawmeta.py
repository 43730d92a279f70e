"""Writing a stored file's metadata behind the storage's back, as a corruption or another
program would: the local metadata.json, memory's dict, the GridFS document, the S3 or GCS
object's metadata.
"""

from __future__ import annotations

import json
import os
from typing import Any

from depot.io.interfaces import FileStorage
from depot.testing import QUOTED_BADLY, RawMetadata

#: The fields every backend keeps, by the names StoredFile gives them.
FIELDS = ("filename", "content_type", "content_length", "last_modified")

_GRIDFS = {"content_type": "contentType", "content_length": "length"}
_BUCKET = {
    "filename": "x-depot-filename",
    "content_type": "x-depot-content-type",
    "last_modified": "x-depot-modified",
}


def can_write(storage: FileStorage, field: str, value: Any) -> bool:
    """Whether ``value`` can be written as ``field`` on this backend at all.

    S3 and GCS compute the length themselves and keep only strings.
    """
    backend = type(storage).__name__
    if value == QUOTED_BADLY:
        return backend in ("S3Storage", "GCSStorage")
    if backend == "S3Storage":
        return field in ("filename", "last_modified") and isinstance(value, str)
    if backend == "GCSStorage":  # GCS turns every metadata value into a string
        return field != "content_length" and isinstance(value, str)
    if backend == "GridFSStorage":
        return not (isinstance(value, int) and abs(value) >= 2**63)  # BSON has no such int
    return True


def write_field(storage: FileStorage, file_id: str, field: str, value: Any) -> None:
    """Store ``value`` as the raw ``field`` of the file's metadata."""
    backend = type(storage).__name__
    if backend == "MemoryFileStorage":
        storage.files[file_id]["metadata"][field] = value  # type: ignore[attr-defined]
    elif backend == "LocalFileStorage":
        path = os.path.join(storage.storage_path, file_id, "metadata.json")  # type: ignore[attr-defined]
        with open(path) as source:
            metadata = json.load(source)
        metadata[field] = value
        with open(path, "w") as out:
            json.dump(metadata, out)
    elif backend == "GridFSStorage":
        from bson import ObjectId

        storage._files.update_one(  # type: ignore[attr-defined]
            {"_id": ObjectId(file_id)}, {"$set": {_GRIDFS.get(field, field): value}}
        )
    elif backend == "S3Storage":
        client, bucket, key = storage._client, storage._bucket, storage._key(file_id)  # type: ignore[attr-defined]
        head = client.head_object(Bucket=bucket, Key=key)
        metadata = {**head["Metadata"], _BUCKET[field]: value}
        client.copy_object(
            Bucket=bucket,
            Key=key,
            CopySource={"Bucket": bucket, "Key": key},
            MetadataDirective="REPLACE",
            Metadata=metadata,
            ContentType=head["ContentType"],
        )
    elif backend == "GCSStorage":
        blob = storage.bucket.get_blob(storage._key(file_id))  # type: ignore[attr-defined]
        blob.metadata = {**(blob.metadata or {}), _BUCKET[field]: value}
        blob.patch()
    else:
        raise AssertionError(f"no raw metadata writer for {backend}")


class BackendRawMetadata(RawMetadata):
    """The contract suite's ``raw_metadata`` for each of depot's backends: the functions above."""

    def __init__(self, storage: FileStorage) -> None:
        self.storage = storage
        if type(storage).__name__ in ("S3Storage", "GCSStorage"):
            # They read a bad x-depot-modified as no date, as filedepot did.
            self.lenient_fields = frozenset({"last_modified"})

    def can_write(self, field: str, value: object) -> bool:
        return can_write(self.storage, field, value)

    def write(self, file_id: str, field: str, value: object) -> None:
        write_field(self.storage, file_id, field, value)
