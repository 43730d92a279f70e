"""Transactions under faults: no file a committed row refers to is ever deleted.

Each scenario runs on SQLite, PostgreSQL and MariaDB (where it applies) with a
local depot, for a fixed number of trials, then checks the invariant: every
file referenced by a committed row opens with its bytes. What the faults leave
behind are orphans (stored files no row refers to), which the scenarios count
and report; removing them is a garbage collector's job.

* the database connection killed between flush and commit (PostgreSQL's
  ``pg_terminate_backend``, MariaDB's ``KILL`` from a second connection);
* the depot failing while deleting after the commit;
* the process killed (SIGKILL) after a commit and before the deletions, at
  a fixed point and at random moments of a loop of commits;
* threads committing, rolling back and retrying failed inserts at once.

``-s`` shows the figures of each scenario.
"""

from __future__ import annotations

import gc
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.engine import Engine

from depot.exceptions import BackendUnavailableError
from depot.fields._tracking import paths_of
from depot.manager import DepotManager
from tests.databases import TestDatabase, database, engine
from tests.fields.models import Base, Document

__all__ = ["database", "engine"]

ROOT = Path(__file__).resolve().parents[2]

#: Trials per scenario and database: small enough for CI (a few seconds each).
KILL_TRIALS = 8
FAILING_DELETE_TRIALS = 20
RANDOM_SIGKILL_TRIALS = 4


@pytest.fixture
def tables(database: TestDatabase) -> Engine:
    Base.metadata.create_all(database.engine)
    with database.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(sa.delete(table))
    return database.engine


@pytest.fixture
def local_depot(tmp_path: Path) -> Path:
    path = tmp_path / "files"
    DepotManager.configure("default", {"depot.backend": "local", "depot.storage_path": str(path)})
    return path


def check_invariant(engine: Engine) -> tuple[int, int]:
    """Every committed row's file opens; returns (referenced files, orphans)."""
    depot = DepotManager.get("default")
    assert depot is not None
    referenced: set[str] = set()
    with orm.Session(engine) as s:
        for doc in s.scalars(sa.select(Document)):
            for path in paths_of(doc.attachment):
                referenced.add(path)
                with doc.attachment.file as stored:
                    assert stored.read().startswith(b"v"), f"{doc.name}: wrong bytes"
    stored_paths = {f"default/{file_id}" for file_id in depot.list()}
    missing = referenced - stored_paths
    assert not missing, f"committed rows refer to deleted files: {sorted(missing)}"
    return len(referenced), len(stored_paths - referenced)


def report(name: str, **figures: Any) -> None:
    print(f"\n[transactions] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


# -- the connection killed between flush and commit -------------------------------------------


def kill_connection(s: orm.Session, admin: Engine) -> None:
    """End the session's database connection from outside, as a server restart or a DBA would."""
    name = admin.dialect.name
    if name == "sqlite":
        # An embedded database has no server to kill it: its handle is closed under it.
        s.connection().connection.dbapi_connection.close()  # type: ignore[union-attr]
        return
    ask, kill = {
        "postgresql": ("SELECT pg_backend_pid()", "SELECT pg_terminate_backend({pid})"),
        "mariadb": ("SELECT CONNECTION_ID()", "KILL {pid}"),
        "mysql": ("SELECT CONNECTION_ID()", "KILL {pid}"),
    }[name]
    pid = int(s.execute(sa.text(ask)).scalar_one())
    with admin.connect() as conn:
        conn.execute(sa.text(kill.format(pid=pid)))


def test_connection_killed_between_flush_and_commit(
    tables: Engine, local_depot: Path, database: TestDatabase
) -> None:
    admin = sa.create_engine(tables.url, isolation_level="AUTOCOMMIT")
    start = time.monotonic()
    failed_commits = 0
    try:
        with orm.Session(tables) as s:
            s.add(Document(name="kept", attachment=b"v0"))
            s.commit()
        for trial in range(KILL_TRIALS):
            with orm.Session(tables) as s:
                doc = s.scalars(sa.select(Document).where(Document.name == "kept")).one()
                doc.attachment = f"v{trial + 1}".encode()
                s.add(Document(name=f"new{trial}", attachment=b"v-new"))
                s.flush()
                kill_connection(s, admin)
                try:
                    s.commit()
                except sa.exc.DBAPIError:
                    failed_commits += 1
                    s.rollback()
        referenced, orphans = check_invariant(tables)
    finally:
        admin.dispose()
        tables.dispose()
    with orm.Session(tables) as s:
        assert s.scalars(sa.select(Document.name)).all() == ["kept"], "a killed commit applied"
    assert failed_commits == KILL_TRIALS
    report(
        f"connection killed ({tables.dialect.name})",
        trials=KILL_TRIALS,
        failed_commits=failed_commits,
        referenced_missing=0,
        orphans=orphans,
        seconds=round(time.monotonic() - start, 1),
    )


# -- the depot failing while deleting after the commit ----------------------------------------


def test_depot_failing_during_post_commit_deletion(
    tables: Engine, local_depot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    depot = DepotManager.get("default")
    assert depot is not None
    real_delete = depot.delete
    chance = random.Random(12)
    failures = 0

    def flaky_delete(file_id: str) -> None:
        nonlocal failures
        if chance.random() < 0.5:
            failures += 1
            raise BackendUnavailableError("the depot went away")
        real_delete(file_id)

    monkeypatch.setattr(depot, "delete", flaky_delete)
    start = time.monotonic()
    with orm.Session(tables) as s:
        s.add_all(Document(name=f"d{n}", attachment=b"v0") for n in range(4))
        s.commit()
    for trial in range(FAILING_DELETE_TRIALS):
        with orm.Session(tables) as s:
            docs = s.scalars(sa.select(Document).order_by(Document.name)).all()
            action = trial % 3
            target = docs[trial % len(docs)]
            if action == 0:
                target.attachment = f"v{trial}".encode()
            elif action == 1 and len(docs) > 1:
                s.delete(target)
                s.add(Document(name=f"r{trial}", attachment=b"v-r"))
            else:
                target.attachment = None
                target.attachment = b"v-again"
            s.commit()  # never raises for a failed deletion
    referenced, orphans = check_invariant(tables)
    report(
        f"depot failing on delete ({tables.dialect.name})",
        trials=FAILING_DELETE_TRIALS,
        failed_deletes=failures,
        referenced=referenced,
        referenced_missing=0,
        orphans=orphans,
        seconds=round(time.monotonic() - start, 1),
    )
    assert failures > 0
    assert orphans == failures, "every failed deletion leaves one orphan, nothing else"


# -- the process killed after a commit, before the deletions ----------------------------------

CHILD = textwrap.dedent(
    """
    import os, signal, sys, json
    import sqlalchemy as sa
    from sqlalchemy import orm
    sys.path.insert(0, {root!r})
    from depot.manager import DepotManager
    from depot.fields import _sqlatracking
    from tests.databases import sqlite_engine
    from tests.fields.models import Document

    settings = json.loads(sys.argv[1])
    DepotManager.configure("default", {{"depot.backend": "local",
                                        "depot.storage_path": settings["files"]}})
    if settings["sqlite"]:
        engine = sqlite_engine(settings["sqlite"])
    else:
        engine = sa.create_engine(settings["url"])
    if settings["die_before_delete"]:
        def die(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        _sqlatracking.delete_files = die
    n = 0
    while True:
        n += 1
        with orm.Session(engine) as s:
            docs = s.scalars(sa.select(Document).order_by(Document.id)).all()
            docs[n % len(docs)].attachment = b"v%d" % n
            if n % 4 == 0:
                s.delete(docs[(n + 1) % len(docs)])
                # Unique across the children of one test: each starts at n = 1.
                s.add(Document(name="c%d-%d" % (os.getpid(), n), attachment=b"v-c"))
            s.commit()
        print(n, flush=True)
    """
)


def run_child(tables: Engine, database: TestDatabase, files: Path, die: bool) -> int:
    """Start the child, let it commit for a while (or until it kills itself); its commits."""
    settings = {
        "files": str(files),
        "sqlite": str(tables.url.database) if tables.dialect.name == "sqlite" else None,
        "url": tables.url.render_as_string(hide_password=False),
        "die_before_delete": die,
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(root=str(ROOT)), json.dumps(settings)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        if not die:
            # Wait for the first commit, then kill at a random moment of the loop.
            assert child.stdout is not None
            first = child.stdout.readline()
            assert first, "the child never committed"
            time.sleep(random.uniform(0.0, 0.4))
            child.send_signal(signal.SIGKILL)
            out, err = child.communicate(timeout=30)
            out = first + out
        else:
            out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == -signal.SIGKILL, err.decode()
    return len(out.split())


def test_process_killed_after_commit_before_deletion(
    tables: Engine, local_depot: Path, database: TestDatabase
) -> None:
    with orm.Session(tables) as s:
        s.add_all(Document(name=f"d{n}", attachment=b"v0") for n in range(3))
        s.commit()
    start = time.monotonic()
    # At the fixed point: the first commit's deletions never run.
    run_child(tables, database, local_depot, die=True)
    referenced, orphans = check_invariant(tables)
    assert orphans >= 1, "the replaced file is left, an orphan"
    commits = 0
    for _ in range(RANDOM_SIGKILL_TRIALS):
        commits += run_child(tables, database, local_depot, die=False)
        referenced, orphans = check_invariant(tables)
    report(
        f"SIGKILL after commit ({tables.dialect.name})",
        trials=1 + RANDOM_SIGKILL_TRIALS,
        commits_before_kills=commits,
        referenced=referenced,
        referenced_missing=0,
        orphans=orphans,
        seconds=round(time.monotonic() - start, 1),
    )
    tables.dispose()
    assert os.path.isdir(local_depot)


# -- many sessions at once --------------------------------------------------------------------

THREADS = 6
TRANSACTIONS_PER_THREAD = 20


def test_concurrent_sessions_with_failures_and_retries(tables: Engine, local_depot: Path) -> None:
    """Threads replacing, rolling back and retrying at once: nothing referenced goes, nothing stays.

    SQLite serialises its writers (a lock here: its driver would answer "database
    is locked"); the servers run the threads' transactions side by side.
    """
    serial = threading.Lock() if tables.dialect.name == "sqlite" else None
    errors: list[Exception] = []
    outcomes = {"commits": 0, "rollbacks": 0, "retries": 0}
    count = threading.Lock()

    def tally(key: str) -> None:
        with count:
            outcomes[key] += 1

    with orm.Session(tables) as s:
        s.add_all(Document(name=f"t{n}", attachment=b"v0") for n in range(THREADS))
        s.commit()

    def work(n: int) -> None:
        chance = random.Random(n)
        try:
            for i in range(TRANSACTIONS_PER_THREAD):
                if serial is not None:
                    serial.acquire()
                try:
                    with orm.Session(tables) as s:
                        doc = s.scalars(sa.select(Document).where(Document.name == f"t{n}")).one()
                        doc.attachment = b"v%d-%d" % (n, i)
                        roll = chance.random()
                        if roll < 0.25:
                            s.rollback()
                            tally("rollbacks")
                            continue
                        if roll < 0.5:
                            # A duplicate name fails in its savepoint; renamed, it is retried.
                            extra = Document(name=f"t{n}", attachment=b"v-extra")
                            try:
                                with s.begin_nested():
                                    s.add(extra)
                            except sa.exc.IntegrityError:
                                extra.name = f"x{n}-{i}"
                                s.add(extra)
                                tally("retries")
                        s.commit()
                        tally("commits")
                finally:
                    if serial is not None:
                        serial.release()
        except Exception as exc:  # reported by the main thread, which asserts there is none
            errors.append(exc)

    start = time.monotonic()
    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    gc.collect()
    with orm.Session(tables) as s:
        s.execute(sa.select(1))  # ends a transaction: files of dropped objects go
    referenced, orphans = check_invariant(tables)
    report(
        f"concurrent sessions ({tables.dialect.name})",
        threads=THREADS,
        transactions=THREADS * TRANSACTIONS_PER_THREAD,
        **outcomes,
        referenced=referenced,
        referenced_missing=0,
        orphans=orphans,
        seconds=round(time.monotonic() - start, 1),
    )
    assert orphans == 0
