"""What every field (SQLAlchemy, Ming) needs to find and delete the files of a value.

How each field decides *when* a file is garbage lives with it:
:mod:`depot.fields._sqlatracking` for SQLAlchemy, :mod:`depot.fields.ming` for Ming.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from depot.manager import DepotManager

log = logging.getLogger("depot.fields")


def paths_of(value: Any) -> list[str]:
    """Every ``'<depot>/<id>'`` path a field value (one file, or a list of them) refers to."""
    if isinstance(value, list):
        return [path for item in value for path in paths_of(item)]
    if not isinstance(value, dict):
        # None, or a value whose text could not be read: no file is known to be its.
        return []
    files = dict.get(value, "files")
    if files is None:
        # Rows written before values listed their files still name the main one.
        path = dict.get(value, "path")
        return [path] if isinstance(path, str) and path else []
    if not isinstance(files, list):
        return []
    # Only strings can be paths: anything else in a hand-edited row names no file.
    return [path for path in files if isinstance(path, str)]


def follow_moved_paths(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Make each stored ``<name>_url`` of ``after`` follow its ``<name>_path`` from ``before``.

    A filter stores the middleware's URL of the file it added
    (``'/depot/<depot>/<id>'``, as ``WithThumbnailFilter`` does): once a move
    makes the path name another depot, that URL would still serve the old one.
    A URL that does not end in the old path (a CDN's) is left as it is.
    """
    for key, url in list(after.items()):
        prefix = key[: -len("_url")]
        if not key.endswith("_url") or not prefix or key.startswith("_"):
            continue
        old, new = before.get(f"{prefix}_path"), after.get(f"{prefix}_path")
        if not (isinstance(old, str) and isinstance(new, str) and isinstance(url, str)):
            continue
        if old != new and url.endswith("/" + old):
            after[key] = url[: -len(old)] + new


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
