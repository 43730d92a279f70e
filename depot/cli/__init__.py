"""The ``depot`` command (click and rich): the only part of depot that prints.

``depot --help`` lists the commands; docs/operating.rst ("The depot command") shows
each with its output.

.. versionadded:: 1.0
"""

from __future__ import annotations

from depot._settings import missing_dependency_message

try:
    import click  # noqa: F401
    import rich  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(missing_dependency_message("depot.cli", exc.name or "click")) from exc

# The commands register themselves on the group as their modules are imported.
from depot.cli import files, operations, serve  # noqa: F401
from depot.cli.group import cli, main

__all__ = ["cli", "main"]
