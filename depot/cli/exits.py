"""The exit statuses of the ``depot`` command, which scripts can rely on.

``verify`` adds :data:`FAILED` (files that could not be read), :data:`MISSING`,
:data:`CORRUPT` and :data:`UNREADABLE` together (as bits): 24 means files are
missing *and* corrupt.
"""

from __future__ import annotations

__all__ = [
    "BROKEN_PIPE",
    "CONFIGURATION",
    "CORRUPT",
    "FAILED",
    "INTERRUPTED",
    "MISSING",
    "NOT_FOUND",
    "OK",
    "UNAVAILABLE",
    "UNREADABLE",
    "USAGE",
]

#: Done; nothing was wrong.
OK = 0
#: Done, but some files failed (each is listed with its reason), or the work was refused.
FAILED = 1
#: The command line is wrong (an unknown option, a missing argument): click's status.
USAGE = 2
#: The configuration is wrong: a bad setting, an unknown depot, a missing extra.
CONFIGURATION = 3
#: A file named on the command line does not exist.
NOT_FOUND = 4
#: A backend (S3, MongoDB, a database) could not be reached.
UNAVAILABLE = 5
#: ``verify``: some referenced files are missing.
MISSING = 8
#: ``verify``: some files do not hold the bytes they recorded.
CORRUPT = 16
#: ``verify``: some column values could not be read, so their files are not known.
UNREADABLE = 32
#: Stopped by Ctrl-C (SIGINT), as shells report it.
INTERRUPTED = 130
#: Standard output was closed before the results were written (``depot ls media | head
#: -1``): stopped quietly, with the status of a command killed by SIGPIPE.
BROKEN_PIPE = 141
