"""Creating the SQL backend's tables, shared by the files' and the uploads' tables.

.. versionadded:: 1.0
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine

__all__ = ["BYTES", "create_missing_tables"]

#: The type of a column of chunk bytes: MariaDB's BLOB holds 64 KiB, LONGBLOB 4 GiB.
BYTES = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")

#: How many times the tables are checked and created before giving up.
_CREATE_ATTEMPTS = 4


def create_missing_tables(engine: Engine, tables: list[sa.Table]) -> None:
    """Create those of ``tables`` the database lacks, whichever process gets there first."""
    metadata = tables[0].metadata
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            with engine.begin() as conn:
                metadata.create_all(conn, tables=tables, checkfirst=True)
            return
        except sa.exc.DBAPIError:
            # Another process created them between the check and the CREATE,
            # or held the lock: check again. If that is not what happened, the
            # last attempt raises the real error.
            if attempt == _CREATE_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
