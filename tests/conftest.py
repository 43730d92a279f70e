"""Fixtures shared by every test module.

``storage`` is the backend under test: the contract suite and the middleware
tests run once per backend. A backend joins by adding its module to
``tests/backends`` (see its ``__init__``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest

from depot.io.interfaces import FileStorage
from depot.manager import DepotManager
from tests.backends import BACKENDS

AVAILABLE = [name for name in BACKENDS if importlib.util.find_spec(f"tests.backends.{name}")]
pytest_plugins = [f"tests.backends.{name}" for name in AVAILABLE]


@pytest.fixture(params=AVAILABLE)
def backend_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The flat settings of the backend under test."""
    settings: dict[str, Any] = request.getfixturevalue(f"{request.param}_settings")
    return settings


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
