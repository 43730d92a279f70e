"""How long operations report progress: a :class:`Progress` event passed to a callable.

The operations of :mod:`depot.ops` never print. They call the ``progress``
callable they are given with an event after each file and, while a large file
streams, about twice a second; a command line tool draws a bar, a rate and an
ETA from it, a web application stores it. The callable runs in the thread that
called the operation; an exception it raises stops the operation (files being
copied at that moment finish or are abandoned whole, never half written) and
propagates to the caller.

.. versionadded:: 1.0
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Progress", "ProgressCallback"]


@dataclass(frozen=True)
class Progress:
    """Where an operation stands.

    :param phase: what is being done: ``'copy'``, ``'scan'`` (reading
        references), ``'delete'``, ``'verify'``...
    :param files_done: files finished in this phase, whatever their outcome.
    :param files_total: files this phase will handle, or ``None`` while unknown.
    :param bytes_done: bytes read in this phase so far (partly read files included).
    :param bytes_total: bytes this phase will read, or ``None`` while unknown;
        for a copy, a running total that grows as files are found to need a copy.
    :param file_id: the file just finished, or ``None`` for an event sent while
        files stream.
    :param outcome: what happened to ``file_id``: ``'copied'``, ``'skipped'``,
        ``'failed'``, ``'deleted'``, ``'ok'``, ``'missing'``, ``'corrupt'``...

    .. versionadded:: 1.0
    """

    phase: str
    files_done: int
    files_total: int | None
    bytes_done: int = 0
    bytes_total: int | None = None
    file_id: str | None = None
    outcome: str | None = None


#: What the ``progress`` argument of the operations takes.
ProgressCallback = Callable[[Progress], object]
