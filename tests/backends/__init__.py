"""One module per backend, each defining the fixture ``<name>_settings``.

The fixture returns the flat settings (``depot.backend`` and its options) of a
fresh, empty storage of that backend, starting whatever server it needs.
``tests/conftest.py`` runs the contract and middleware suites once per module
listed in ``BACKENDS`` that exists.
"""

from __future__ import annotations

from typing import Any

BACKENDS = ["memory", "local", "s3", "gridfs", "gcs"]


def settings_to_kwargs(settings: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The keyword arguments of a backend's class for these ``depot.*`` settings."""
    kwargs = {k[len("depot.") :]: v for k, v in settings.items() if k != "depot.backend"}
    kwargs.update(changes)
    return kwargs
