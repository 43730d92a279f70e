"""The local backend, in the test's temporary directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def local_settings(tmp_path: Path) -> dict[str, Any]:
    return {"depot.backend": "local", "depot.storage_path": str(tmp_path / "files")}
