"""Fixtures shared by every test module.

``storage`` is the backend under test: the contract suite and the middleware
tests run once per backend. A backend joins by adding the settings that
configure it to ``BACKEND_SETTINGS``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from depot.io.interfaces import FileStorage
from depot.manager import DepotManager

BACKEND_SETTINGS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "memory": lambda tmp_path: {"depot.backend": "memory"},
    "local": lambda tmp_path: {
        "depot.backend": "local",
        "depot.storage_path": str(tmp_path / "files"),
    },
}


@pytest.fixture(params=sorted(BACKEND_SETTINGS))
def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The flat settings of the backend under test."""
    return BACKEND_SETTINGS[request.param](tmp_path)


@pytest.fixture
def storage(backend_settings: dict[str, Any]) -> FileStorage:
    """A storage of the backend under test, not registered with DepotManager."""
    return DepotManager.from_config(backend_settings)


@pytest.fixture
def default_depot(backend_settings: dict[str, Any]) -> FileStorage:
    """The backend under test, configured as DepotManager's depot 'default'."""
    return DepotManager.configure("default", backend_settings)


@pytest.fixture(autouse=True)
def _fresh_manager() -> Iterator[None]:
    DepotManager._clear()
    yield
    DepotManager._clear()
