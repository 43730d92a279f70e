"""Fixtures shared by every test module.

``storage`` is the backend under test: the contract suite and the middleware
tests run once per backend. A backend joins by adding its module to
``tests/backends`` (see its ``__init__``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from depot.io.interfaces import FileStorage
from depot.manager import DepotManager
from tests.backends import BACKENDS, fixture_of, module_of
from tests.databases import summarize, tag_items

# Property-based tests run a fixed number of examples in CI, the same ones each
# run (derandomized), so a failure reproduces; DEPOT_HYPOTHESIS=thorough runs
# many more, with fresh random examples, for a deliberate hunt.
settings.register_profile(
    "ci",
    max_examples=150,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "thorough",
    max_examples=5000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("DEPOT_HYPOTHESIS", "ci"))

AVAILABLE = [
    name for name in BACKENDS if importlib.util.find_spec(f"tests.backends.{module_of(name)}")
]
pytest_plugins = list(dict.fromkeys(f"tests.backends.{module_of(name)}" for name in AVAILABLE))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tag_items(items)
    # The SQL backend's runs count among the tests of their database.
    for item in items:
        backend = getattr(getattr(item, "callspec", None), "params", {}).get("backend_settings")
        if isinstance(backend, str) and backend.startswith("sql-"):
            item.user_properties.append(("database", backend.partition("-")[2]))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    # How many ORM tests ran on each database (a skipped server shows here).
    summarize(terminalreporter)


@pytest.fixture(params=AVAILABLE)
def backend_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The flat settings of the backend under test."""
    settings: dict[str, Any] = request.getfixturevalue(fixture_of(request.param))
    return settings


@pytest.fixture
def storage(backend_settings: dict[str, Any]) -> FileStorage:
    """A storage of the backend under test, not registered with DepotManager."""
    return DepotManager.from_config(backend_settings)


@pytest.fixture
def default_depot(backend_settings: dict[str, Any]) -> FileStorage:
    """The backend under test, configured as DepotManager's depot 'default'."""
    return DepotManager.configure("default", backend_settings)


#: What the reference venv holds: filedepot and the libraries its backends and fields import.
REFERENCE_PACKAGES = [
    "filedepot==0.12.0",
    "boto3",
    "pymongo",
    "mongomock",
    "google-cloud-storage",
    "SQLAlchemy",
    "Ming",
    "Pillow",
]


@pytest.fixture(scope="session")
def filedepot_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The Python of a throwaway venv with filedepot 0.12 (never in depot's own env).

    ``DEPOT_TEST_FILEDEPOT_PYTHON`` names an existing one instead.
    """
    given = os.environ.get("DEPOT_TEST_FILEDEPOT_PYTHON")
    if given:
        return given
    venv = tmp_path_factory.mktemp("filedepot-venv")
    python = venv / "bin" / "python"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *REFERENCE_PACKAGES],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = getattr(exc, "stderr", "") or ""
        pytest.skip(
            f"could not install filedepot 0.12 into a throwaway venv "
            f"(package index unreachable?): {detail.strip()[-300:]}"
        )
    return str(python)


@pytest.fixture(autouse=True)
def _fresh_manager() -> Iterator[None]:
    DepotManager._clear()
    yield
    DepotManager._clear()
