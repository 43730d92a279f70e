"""DepotMiddleware: serves stored files under a URL of the application.

A file ``<depot name>/<file id>`` is served at ``<mountpoint>/<depot name>/<file id>``
(what :meth:`DepotManager.url_for` returns). Requests elsewhere, and methods
other than GET and HEAD, go to the wrapped application untouched.

filedepot's import path: the WSGI front end lives in :mod:`depot.http.wsgi`,
over the HTTP core that the ASGI front end (:mod:`depot.asgi`) shares.
"""

from __future__ import annotations

# filedepot's private names, which applications' tests reach, stay importable here.
from depot.http.body import BLOCK_SIZE
from depot.http.body import FileIter as _FileIter  # noqa: F401 (filedepot's name)
from depot.http.options import OFFLOAD_HEADERS  # noqa: F401 (kept where it was)
from depot.http.wsgi import DepotMiddleware, FileServeApp

__all__ = ["DepotMiddleware", "FileServeApp"]

#: filedepot's name for the block size.
_BLOCK_SIZE = BLOCK_SIZE
