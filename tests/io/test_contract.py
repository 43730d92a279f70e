"""The contract suite (:mod:`depot.testing`), run once per backend of ``tests/backends``.

``storage`` comes from ``tests/conftest.py``, parametrised on every backend;
this class adds what only depot's own tests know of them: how to damage their
metadata, and what each test server does.
"""

from __future__ import annotations

import pytest

from depot.io.interfaces import FileStorage, StoredFile
from depot.testing import RawMetadata, StorageContract
from tests.io.rawmeta import BackendRawMetadata

#: The backends that hold a file's bytes from get() on.
HOLD_BYTES_FROM_GET = ("MemoryFileStorage", "LocalFileStorage")


class TestContract(StorageContract):
    @pytest.fixture
    def raw_metadata(self, storage: FileStorage) -> RawMetadata:
        return BackendRawMetadata(storage)

    def deleted_file_reads_whole(self, storage: FileStorage) -> bool:
        return type(storage).__name__ in HOLD_BYTES_FROM_GET

    def check_old_version(
        self, storage: FileStorage, stored: StoredFile, data: bytes, old: bytes
    ) -> None:
        if type(storage).__name__ == "GCSStorage":
            # gcp-storage-emulator ignores ifGenerationMatch, which GCS enforces
            # (a 412: "replaced"), so the bytes may be the new version's;
            # tests/io/test_gcs.py checks that every read sends it. Here: the
            # file still asks for the generation it held, not the newest.
            blob = stored.blob  # type: ignore[attr-defined]
            assert blob.generation != blob.bucket.get_blob(blob.name).generation
            return
        super().check_old_version(storage, stored, data, old)
