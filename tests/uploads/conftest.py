"""Fixtures of the upload tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run tus over S3 through one front end: WSGI and ASGI share the tus logic, tried
    on every other backend, and each S3 request is real HTTP to moto (the suite's time)."""
    slow = [item for item in items if "[s3-asgi]" in item.nodeid]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if "[s3-asgi]" not in item.nodeid]
    # The chunked tests' runs on SQL count among the tests of their database.
    for item in items:
        backend = getattr(getattr(item, "callspec", None), "params", {}).get("settings")
        if isinstance(backend, str) and backend.startswith("sql_"):
            item.user_properties.append(("database", backend.partition("_")[2]))


@pytest.fixture
def patched() -> Iterator[pytest.MonkeyPatch]:
    """A MonkeyPatch of the test's own: its undo() leaves the backend fixtures' patches be."""
    with pytest.MonkeyPatch.context() as patcher:
        yield patcher
