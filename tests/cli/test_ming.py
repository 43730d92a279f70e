"""``depot gc`` and ``depot migrate`` over Ming documents, in this process.

Ming's in-memory datastore (``mim://``) lives in one process, so these tests call
the command's ``main()`` here instead of the console script; the session is
bound as an application's ``--app`` setup would bind it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from depot.cli import main
from depot.io.utils import FileIntent
from depot.manager import DepotManager
from tests.ops.conftest import OLD


@pytest.fixture
def notes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    pytest.importorskip("ming")
    from ming import create_datastore

    from tests.ops.ming_models import Note, ops_session

    monkeypatch.chdir(tmp_path)  # no depot.ini around: the depots are this process's
    DepotManager.configure("media", {"depot.storage_path": str(tmp_path / "media")})
    DepotManager.configure("archive", {"depot.storage_path": str(tmp_path / "archive")})
    datastore = create_datastore("mim:///depot_cli_ming")
    ops_session.impl.bind = datastore
    try:
        yield Note
    finally:
        ops_session.clear()
        datastore.conn.drop_database("depot_cli_ming")
        ops_session.impl.bind = None


MING = [
    "--ming-session",
    "tests.ops.ming_models:ops_session",
    "--ming-models",
    "tests.ops.ming_models",
]


def test_gc_and_migrate_read_the_ming_documents(
    notes: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.ops.ming_models import ops_session

    media = DepotManager.get("media")
    with mock.patch("depot.io.utils.timestamp", return_value=OLD):
        for n in range(3):
            notes(title=f"n{n}", file=FileIntent(b"note %d" % n, f"{n}.txt", "text/plain"))
        ops_session.flush()
        leftover = media.create(b"nobody's")
    ops_session.clear()

    assert main(["gc", "media", *MING, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [g["file_id"] for g in report["garbage"]] == [leftover]
    assert (report["rows"], report["references"]) == (3, 3)

    assert main(["migrate", "archive", *MING, "--rewrite", "--json"]) == 0
    migrated = json.loads(capsys.readouterr().out)
    assert migrated["copy"]["copied"] == 3 and migrated["rewritten"] == 3
    assert {n.file["depot_name"] for n in notes.query.find()} == {"archive"}


def test_ming_models_without_a_session_is_a_usage_error(
    notes: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gc", "media", "--ming-models", "tests.ops.ming_models"]) == 2
    assert "--ming-models needs --ming-session MODULE:NAME" in capsys.readouterr().err
