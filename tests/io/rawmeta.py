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
    if backend == "SQLStorage":
        return _sql_can_hold(storage, field, value)
    return True


def _sql_can_hold(storage: FileStorage, field: str, value: Any) -> bool:
    """Whether an SQL column keeps ``value`` as it is, so that reading it back is corrupt.

    PostgreSQL and MariaDB columns refuse or convert a value of another type
    (tests/io/test_sql.py shows it): only a negative length gets in. SQLite
    keeps what it is given, but turns numbers into text in a text column, and
    numeric text into a number in a number column.
    """
    bindable = (isinstance(value, int) and abs(value) < 2**63) or isinstance(value, (float, str))
    if isinstance(value, bool) or not bindable:
        return False
    if storage.engine.dialect.name != "sqlite":  # type: ignore[attr-defined]
        return field == "content_length" and isinstance(value, int)
    if field in ("filename", "content_type"):
        return isinstance(value, str)
    if field == "content_length":
        return not isinstance(value, str)
    return True


def strictly_typed(storage: FileStorage) -> bool:
    """Whether the backend's own types refuse most wrong-typed metadata (PostgreSQL, MariaDB)."""
    engine = getattr(storage, "engine", None)
    return type(storage).__name__ == "SQLStorage" and engine.dialect.name != "sqlite"  # type: ignore[union-attr]


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
    elif backend == "SQLStorage":
        import sqlalchemy as sa

        files = storage.tables.files  # type: ignore[attr-defined]
        # Through text(), whose parameters have no type: the value reaches the
        # driver as it is, as another program's would.
        statement = sa.text(f"UPDATE {files.name} SET {field} = :value WHERE file_id = :id")
        with storage.engine.begin() as conn:  # type: ignore[attr-defined]
            conn.execute(statement, {"value": value, "id": file_id})
    else:
        raise AssertionError(f"no raw metadata writer for {backend}")


class BackendRawMetadata(RawMetadata):
    """The contract suite's ``raw_metadata`` for each of depot's backends: the functions above."""

    def __init__(self, storage: FileStorage) -> None:
        self.storage = storage
        if type(storage).__name__ in ("S3Storage", "GCSStorage"):
            # They read a bad x-depot-modified as no date, as filedepot did.
            self.lenient_fields = frozenset({"last_modified"})
        if strictly_typed(storage):
            # PostgreSQL's and MariaDB's columns keep out all but one of the wrong types.
            self.least_writable = 1

    def can_write(self, field: str, value: object) -> bool:
        return can_write(self.storage, field, value)

    def write(self, file_id: str, field: str, value: object) -> None:
        write_field(self.storage, file_id, field, value)
