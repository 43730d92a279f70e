"""One module per backend, each defining the fixture ``<name>_settings``.

The fixture returns the flat settings (``depot.backend`` and its options) of a
fresh, empty storage of that backend, starting whatever server it needs.
``tests/conftest.py`` runs the contract and middleware suites once per module
listed in ``BACKENDS`` that exists. An entry ``<module>-<variant>`` is one
variant of a module's backend (``sql-postgresql``: the SQL backend on
PostgreSQL), with the fixture ``<module>_<variant>_settings``.
"""

from __future__ import annotations

from typing import Any

BACKENDS = [
    "memory",
    "local",
    "s3",
    "gridfs",
    "gcs",
    "sql-sqlite",
    "sql-postgresql",
    "sql-mariadb",
]


def module_of(backend: str) -> str:
    """The module in ``tests/backends`` of a ``BACKENDS`` entry (its name before any ``-``)."""
    return backend.partition("-")[0]


def fixture_of(backend: str) -> str:
    """The name of the fixture giving a ``BACKENDS`` entry's settings."""
    return backend.replace("-", "_") + "_settings"


def settings_to_kwargs(settings: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The keyword arguments of a backend's class for these ``depot.*`` settings."""
    kwargs = {k[len("depot.") :]: v for k, v in settings.items() if k != "depot.backend"}
    kwargs.update(changes)
    return kwargs
