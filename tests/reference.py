"""Running filedepot 0.12 itself (from its throwaway venv) against what depot wrote."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from depot.io.interfaces import FileStorage

REPO = Path(__file__).resolve().parents[1]

#: The keys of filedepot 0.12's UploadedFile, in the order its JSON has them.
UPLOADED_FILE_KEYS = [
    "depot_name",
    "files",
    "file_id",
    "path",
    "filename",
    "content_type",
    "uploaded_at",
    "_public_url",
]


def run_filedepot(
    python: str,
    script: str,
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    loads: Callable[[str], Any] = json.loads,
) -> dict[str, Any]:
    """Run ``script`` with filedepot's interpreter and return the report it prints.

    The child sees neither the repository nor our environment, so it imports
    filedepot's ``depot``; the report's ``module`` proves it did.
    """
    result = subprocess.run(
        [python, "-c", script, *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=str(cwd),
        env={"PATH": os.environ["PATH"], **(env or {})},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = loads(result.stdout)
    assert not report["module"].startswith(str(REPO)), "ran ours, not filedepot"
    return report


def assert_filedepot_read(
    report: dict[str, Any],
    storage: FileStorage,
    written: dict[str, tuple[bytes, str, str]],
    public_url: bool = False,
) -> None:
    """filedepot read each written ``{id: (data, filename, content_type)}`` as depot does."""
    assert set(report["read"]) == set(written)
    for file_id, (data, filename, content_type) in written.items():
        seen = report["read"][file_id]
        ours = storage.get(file_id)
        assert base64.b64decode(seen["data"]) == data
        assert (seen["filename"], seen["content_type"], seen["content_length"]) == (
            filename,
            content_type,
            len(data),
        )
        assert seen["last_modified"] == str(ours.last_modified)
        if public_url:
            assert seen["public_url"] == ours.public_url


def assert_replaces_and_deletes(storage: FileStorage, file_id: str) -> None:
    """depot replaces then deletes ``file_id``, filedepot's ``hello.txt`` (text/plain)."""
    storage.replace(file_id, b"replaced")
    stored = storage.get(file_id)
    assert (stored.read(), stored.filename, stored.content_type) == (
        b"replaced",
        "hello.txt",
        "text/plain",
    )
    assert stored.checksum is not None
    storage.delete(file_id)
    assert file_id not in storage.list()
