"""What a database transaction did with stored files, and deleting the garbage once it ends.

:func:`delete_files` and :func:`paths_of` serve every field (SQLAlchemy, Ming).
The SQLAlchemy layer (:mod:`depot.fields._sqlatracking`) feeds a :class:`Changes` per
transaction and savepoint with two kinds of facts:

* a file was *stored* for this transaction (a field built a value from content);
* a row written by this transaction *references* a file (+1: inserted, or
  updated to it) or stops referencing it (-1: updated away from it, deleted).

When the transaction ends the facts give the garbage exactly: after a rollback,
everything stored in it; after a commit, every file whose references went down,
and every file stored in it that no written row kept. Counting references
rather than remembering "old" and "new" values keeps a file that one row
dropped and another row took (``b.file = a.file; a.file = other``).
"""

from __future__ import annotations

import logging
import weakref
from collections import Counter
from collections.abc import Iterable
from typing import Any

from depot.manager import DepotManager

log = logging.getLogger("depot.fields")


class Changes:
    """The file facts of one transaction or savepoint."""

    __slots__ = ("committed", "references", "stored")

    def __init__(self) -> None:
        self.stored: dict[str, None] = {}
        self.references: Counter[str] = Counter()
        self.committed = False

    def add_stored(self, paths: Iterable[str]) -> None:
        self.stored.update(dict.fromkeys(paths))

    def add_references(self, paths: Iterable[str], change: int) -> None:
        for path in paths:
            self.references[path] += change

    def absorb(self, released: Changes) -> None:
        """Take over the facts of a savepoint released into this transaction."""
        self.stored.update(released.stored)
        for path, change in released.references.items():
            self.references[path] += change

    def garbage_after_commit(self) -> list[str]:
        """Files that no row refers to any more once this transaction committed."""
        dropped = [path for path, change in self.references.items() if change < 0]
        unused = [path for path in self.stored if self.references[path] <= 0]
        return list(dict.fromkeys(dropped + unused))

    def garbage_after_rollback(self) -> list[str]:
        """Files stored for this transaction, which no row can refer to after its rollback."""
        return list(self.stored)


#: Values built from content that no transaction has taken yet, by ``id()``:
#: a field filled while its object was in no session (or in one with no
#: transaction) stores the file at once; the transaction that first writes or
#: receives the value takes it over (see :func:`claim`).
_unclaimed: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


def mark_unclaimed(value: Any) -> None:
    _unclaimed[id(value)] = value


def is_unclaimed(value: Any) -> bool:
    return _unclaimed.get(id(value)) is value


def claim(value: Any, changes: Changes) -> None:
    """Make the files of ``value`` part of ``changes`` if no transaction took them yet."""
    # A live object's id cannot belong to another live object, so the entry
    # found under it is this value or nothing.
    if _unclaimed.pop(id(value), None) is value:
        changes.add_stored(paths_of(value))


def paths_of(value: Any) -> list[str]:
    """Every ``'<depot>/<id>'`` path a field value (one file, or a list of them) refers to."""
    if value is None:
        return []
    if isinstance(value, list):
        return [path for item in value for path in paths_of(item)]
    files = dict.get(value, "files")
    if files is None:
        # Rows written before values listed their files still name the main one.
        path = dict.get(value, "path")
        return [path] if path else []
    return list(files)


def delete_files(paths: Iterable[str], why: str, logger: logging.Logger = log) -> None:
    """Delete each of ``paths``; a failure is logged with the path, never raised.

    This runs after the transaction ended: raising would report a failure for a
    commit that succeeded, so a file that cannot be deleted is left behind and
    logged, for a later clean-up to find.

    :param logger: where failures go: each field logs on its own logger.
    """
    for path in paths:
        depot_name, _, file_id = path.partition("/")
        depot = DepotManager.get(depot_name)
        if depot is None:
            logger.error(
                "Could not delete %s (%s): depot %r is not configured; the file stays in it",
                path,
                why,
                depot_name,
            )
            continue
        try:
            depot.delete(file_id)
        except Exception:
            logger.error(
                "Could not delete %s (%s); the file stays in its depot", path, why, exc_info=True
            )
