"""Finalizes of one upload that overlap, on the staging every test can interleave (memory)."""

from __future__ import annotations

import hashlib

import pytest

from depot.io.memory import MemoryFileStorage


def test_a_finalize_that_claims_after_another_finished_returns_its_file(
    patched: pytest.MonkeyPatch,
) -> None:
    storage = MemoryFileStorage()
    data = b"raced"
    upload_id = storage.reserve(len(data), "sha256:" + hashlib.sha256(data).hexdigest())
    storage.write_chunk(upload_id, 0, data)
    staging = storage._staging()
    claim = staging.claim
    other: list[str] = []

    def claim_after_another_finalize(upload: str, file_id: str) -> bool:
        # This finalize has read the record (no file yet); another one runs
        # whole before it claims, and lets its claim go.
        patched.setattr(staging, "claim", claim)
        other.append(storage.finalize(upload))
        return claim(upload, file_id)

    patched.setattr(staging, "claim", claim_after_another_finalize)
    file_id, recorded = storage._finalize(upload_id, ())
    assert (file_id, recorded) == (other[0], False)
    assert storage.list() == [file_id]
    assert storage.get(file_id).read() == data
    assert staging.claimed(upload_id) is None
