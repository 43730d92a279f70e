"""Serving stored files to ASGI applications (Starlette, FastAPI, Litestar, Django on ASGI).

:class:`DepotASGIMiddleware` wraps an application, as
:class:`~depot.middleware.DepotMiddleware` does for WSGI, with the same
options and answers; :class:`DepotASGIApp` serves depot URLs alone, for
mounting in a framework's routes. Both live in :mod:`depot.http.asgi`.

.. versionadded:: 1.0
"""

from __future__ import annotations

from depot.http.asgi import DepotASGIApp, DepotASGIMiddleware

__all__ = ["DepotASGIApp", "DepotASGIMiddleware"]
