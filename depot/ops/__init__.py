"""Operating depots: copy and migrate files, collect garbage, verify checksums.

Long operations report through a ``progress`` callable
(:mod:`depot.ops.progress`), with each file's outcome, and return a summary
that lists the files needing attention with the reason and counts the others;
they never print. The ``depot`` command draws them.

.. versionadded:: 1.0
"""

from __future__ import annotations

from depot.ops.copy import CopySummary, FileResult, copy_depot
from depot.ops.gc import GRACE, GarbageSummary, collect_garbage
from depot.ops.migrate import MigrationPlan, MigrationSummary, migrate
from depot.ops.progress import Progress, ProgressCallback
from depot.ops.references import (
    Batch,
    Reference,
    Unreadable,
    file_columns,
    ming_references,
    sqlalchemy_references,
)
from depot.ops.verify import VerifySummary, verify_depot, verify_references

__all__ = [
    "GRACE",
    "Batch",
    "CopySummary",
    "FileResult",
    "GarbageSummary",
    "MigrationPlan",
    "MigrationSummary",
    "Progress",
    "ProgressCallback",
    "Reference",
    "Unreadable",
    "VerifySummary",
    "collect_garbage",
    "copy_depot",
    "file_columns",
    "migrate",
    "ming_references",
    "sqlalchemy_references",
    "verify_depot",
    "verify_references",
]
