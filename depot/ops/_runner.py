"""What the operations share: depots given by name, and files handled by a few threads."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from depot.exceptions import UnknownDepotError
from depot.io.interfaces import FileStorage
from depot.manager import DepotManager

T = TypeVar("T")
R = TypeVar("R")

#: How often, in seconds, an event is sent while files stream and none finishes.
TICK = 0.5


def storage_of(depot: FileStorage | str, role: str) -> FileStorage:
    """The storage ``depot`` is, or the one configured under that name."""
    if isinstance(depot, FileStorage):
        return depot
    found = DepotManager.get(depot)
    if found is None:
        raise UnknownDepotError(
            f"{role} depot {depot!r} is not configured: call "
            f"DepotManager.configure({depot!r}, settings) first, or pass the storage itself."
        )
    return found


def check_jobs(jobs: int) -> int:
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs={jobs!r}: give the number of files handled at once, 1 or more.")
    return jobs


class ByteCounter:
    """Bytes read so far, added to by the worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self, n: int) -> None:
        with self._lock:
            self.value += n


def run_each(
    items: Iterable[T],
    work: Callable[[T], R],
    jobs: int,
    done: Callable[[T, R], object],
    tick: Callable[[], object],
) -> None:
    """Call ``work`` on each item in ``jobs`` threads; ``done`` with each result, here.

    At most ``2 * jobs`` items are in flight, so an iterable of millions of
    items is consumed as the work goes, never gathered. ``done`` and ``tick``
    (called every :data:`TICK` seconds while nothing finishes) run in the
    calling thread: what they raise stops the run, the items not started are
    dropped, the ones running are waited for, and it propagates.
    ``work`` must return a result for each item, failures included.
    """
    source: Iterator[T] = iter(items)
    pending: dict[Future[R], T] = {}
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="depot-ops") as pool:
        try:
            exhausted = False
            while True:
                while not exhausted and len(pending) < 2 * jobs:
                    try:
                        item = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    pending[pool.submit(work, item)] = item
                if not pending:
                    return
                finished, _ = wait(pending, timeout=TICK, return_when=FIRST_COMPLETED)
                if not finished:
                    tick()
                for future in finished:
                    done(pending.pop(future), future.result())
        finally:
            for future in pending:
                future.cancel()
