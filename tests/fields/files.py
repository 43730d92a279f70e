"""What the field tests look at: whether a stored file is still there."""

from __future__ import annotations

import gc
from typing import Any

import sqlalchemy as sa

from depot.fields._tracking import paths_of
from depot.manager import DepotManager


def exists(path: str) -> bool:
    """Whether the file ``'<depot>/<id>'`` is still stored."""
    depot_name, _, file_id = path.partition("/")
    depot = DepotManager.get(depot_name)
    assert depot is not None
    return depot.exists(file_id)


def all_exist(value: Any) -> bool:
    """Whether every file of a field value (one file or a list) is still stored."""
    paths = paths_of(value)
    assert paths
    return all(exists(p) for p in paths)


def none_exist(value: Any) -> bool:
    """Whether every file of a field value is gone."""
    paths = paths_of(value)
    assert paths
    return not any(exists(p) for p in paths)


def stored_count(name: str = "default") -> int:
    depot = DepotManager.get(name)
    assert depot is not None
    return len(depot.list())


def drop_and_collect(Session: Any) -> None:  # noqa: N803
    """Collect the objects the test dropped, and end a transaction.

    A file stored for an object that can still write it (a new object after a
    rollback, one expunged or detached with its change) stays while the object
    does; once the object and its value are dropped, the next end of any
    transaction deletes it.
    """
    gc.collect()
    with Session() as s:
        s.execute(sa.select(1))
