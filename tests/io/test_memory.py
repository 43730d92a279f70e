"""What the memory backend alone has; the contract suite runs in test_contract.py."""

from __future__ import annotations

import pytest

from depot.exceptions import CorruptMetadataError
from depot.io.memory import MemoryFileStorage


def test_memory_metadata_that_is_not_a_dict_of_its_fields_is_corrupt() -> None:
    storage = MemoryFileStorage()
    for metadata in (None, [], {"filename": "a", "size": 5}):
        file_id = storage.create(b"x")
        storage.files[file_id]["metadata"] = metadata
        with pytest.raises(CorruptMetadataError, match=f"Invalid metadata of file {file_id}"):
            storage.get(file_id)
