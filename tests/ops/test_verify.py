"""verify_references and verify_depot find missing and damaged files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from depot.io.utils import FileIntent
from depot.manager import DepotManager
from depot.ops import (
    Batch,
    Progress,
    Reference,
    sqlalchemy_references,
    verify_depot,
    verify_references,
)
from tests.ops.models import Folder, Photo


def test_finds_missing_and_corrupt_referenced_files(
    db: sa.Engine, local_fast: dict[str, Any]
) -> None:
    media = DepotManager.configure("media", local_fast)
    with orm.Session(db) as session:
        files = [FileIntent(b"file %d" % n, f"{n}.txt", "text/plain") for n in range(4)]
        session.add(Folder(owner="x", number=1, files=files))
        session.commit()
        ids = [f.file_id for f in session.get(Folder, ("x", 1)).files]  # type: ignore[union-attr]
    media.delete(ids[0])
    data = Path(local_fast["depot.storage_path"]) / ids[1] / "file"
    data.write_bytes(b"FILE 1")  # same size, other bytes
    (Path(local_fast["depot.storage_path"]) / ids[2] / "file").write_bytes(b"longer now")
    events: list[Progress] = []
    summary = verify_references(sqlalchemy_references(db, [Photo, Folder]), progress=events.append)
    assert summary.ok == 1
    assert [r.file_id for r in summary.missing] == [f"media/{ids[0]}"]
    assert "depot_ops_folders(owner='x', number=1).files" in summary.missing[0].reason
    corrupt = {r.file_id: r.reason for r in summary.corrupt}
    assert set(corrupt) == {f"media/{ids[1]}", f"media/{ids[2]}"}
    assert "bytes hash to sha256:" in corrupt[f"media/{ids[1]}"]
    assert "holds 10 bytes, records 6" in corrupt[f"media/{ids[2]}"]
    assert len(summary.problems) == 3
    assert [e.files_done for e in events if e.file_id] == [1, 2, 3, 4]

    depot_wide = verify_depot("media")
    assert depot_wide.ok == 1 and len(depot_wide.corrupt) == 2 and not depot_wide.missing


def test_an_unconfigured_depot_and_filedepot_files() -> None:
    media = DepotManager.configure("media", {"depot.backend": "memory"})
    file_id = media.create(b"old")
    media.files[file_id]["metadata"]["checksum"] = None  # as filedepot wrote files
    refs = [
        Batch(
            [Reference("media", file_id, "here"), Reference("gone", file_id, "there")],
            rows=2,
        )
    ]
    summary = verify_references(refs)
    assert [r.reason for r in summary.unchecked] == ["records no checksum; its size matches (here)"]
    assert summary.missing[0].reason == "its depot is not configured (there)"


def test_a_read_that_fails_is_no_corruption_and_an_invalid_id_is_missing(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Reported as corrupt, a file on a backend that was down for a moment could be
    deleted by someone acting on the list (found in review)."""
    from depot.exceptions import BackendUnavailableError
    from depot.io.local import LocalFileStorage

    media = DepotManager.configure("media", {"depot.storage_path": str(tmp_path)})
    fine, flaky, damaged = (media.create(b"%d" % n, "f.txt") for n in range(3))
    (tmp_path / damaged / "metadata.json").write_text('{"filename": 3}')
    real_get = LocalFileStorage.get

    def get(self: Any, file_id: Any) -> Any:
        if file_id == flaky:
            raise BackendUnavailableError("the disk went away for a moment")
        return real_get(self, file_id)

    monkeypatch.setattr(LocalFileStorage, "get", get)
    refs = [
        Batch(
            [Reference("media", i, f"row {n}") for n, i in enumerate([fine, flaky, damaged])]
            + [Reference("media", "../../etc/passwd", "row 3")],
            rows=4,
        )
    ]
    summary = verify_references(refs)
    assert summary.ok == 1
    assert [(r.file_id, r.outcome) for r in summary.failed] == [(f"media/{flaky}", "failed")]
    assert "could not be checked" in summary.failed[0].reason
    assert "run verify again" in summary.failed[0].reason
    assert [r.file_id for r in summary.corrupt] == [f"media/{damaged}"]
    assert "its metadata is damaged" in summary.corrupt[0].reason
    assert [r.file_id for r in summary.missing] == ["media/../../etc/passwd"]
    assert "names no file its depot can hold" in summary.missing[0].reason
