"""Fixtures of the upload tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def patched() -> Iterator[pytest.MonkeyPatch]:
    """A MonkeyPatch of the test's own: its undo() leaves the backend fixtures' patches be."""
    with pytest.MonkeyPatch.context() as patcher:
        yield patcher
