"""The memory backend: nothing to start."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def memory_settings() -> dict[str, Any]:
    return {"depot.backend": "memory"}
