"""The options of a front end (WSGI or ASGI), checked once when it is made."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from depot.http.rules import DEFAULT_INLINE_TYPES, max_age_seconds

if TYPE_CHECKING:
    from depot.http.request import RequestFacts

__all__ = ["OFFLOAD_HEADERS", "Authorize", "ServeOptions"]

#: ``offload`` values and the header each sends to the front server.
OFFLOAD_HEADERS = {"x-accel-redirect": "X-Accel-Redirect", "x-sendfile": "X-Sendfile"}

#: ``authorize(request, depot_name, file_id)``: True serves the file, False answers 403.
Authorize = Callable[["RequestFacts", str, str], Any]


class ServeOptions:
    """How files are served; the same for both front ends.

    :param mountpoint: the URL path files are served under; must start with ``/``.
    :param cache_max_age: seconds browsers and proxies may cache a file.
    :param inline_types: content types served inline (``type/*`` for a family);
        ``None`` for the default (raster images, audio, video, PDF, plain text).
    :param offload: ``'x-accel-redirect'``, ``'x-sendfile'`` or None.
    :param offload_location: the nginx ``internal`` location of ``x-accel-redirect``.
    :param authorize: called as ``authorize(request, depot_name, file_id)`` for
        every file request before the file is looked up; False answers 403.
    :param root_path: where the application is mounted, for URLs built outside
        a request (inside one, the request's own mount is used).
    :param front_end: ``'WSGI'`` or ``'ASGI'``, for error messages; an ASGI
        front end accepts an ``async def`` authorize.
    """

    __slots__ = (
        "authorize",
        "authorize_is_async",
        "cache_max_age",
        "inline_types",
        "mountpoint",
        "offload",
        "offload_location",
        "prefix",
        "root_path",
    )

    def __init__(
        self,
        mountpoint: str = "/depot",
        cache_max_age: int = 3600 * 24 * 7,
        inline_types: Iterable[str] | None = None,
        offload: str | None = None,
        offload_location: str = "/_depot",
        authorize: Authorize | None = None,
        root_path: str = "",
        front_end: str = "WSGI",
    ) -> None:
        what = "DepotMiddleware" if front_end == "WSGI" else "DepotASGIMiddleware"
        if not isinstance(mountpoint, str) or not mountpoint.startswith("/"):
            raise ValueError(
                f"{what} mountpoint must be an absolute path starting with '/', "
                f"not {mountpoint!r}: for example '/depot'."
            )
        if offload is not None and (
            not isinstance(offload, str) or offload.lower() not in OFFLOAD_HEADERS
        ):
            raise ValueError(
                f"{what} offload must be one of {', '.join(OFFLOAD_HEADERS)} "
                f"or None, not {offload!r}."
            )
        if authorize is not None and not callable(authorize):
            raise TypeError(
                f"{what} authorize must be a function (request, depot_name, file_id) -> bool, "
                f"not {authorize!r}."
            )
        is_async = authorize is not None and _is_async(authorize)
        if is_async and front_end == "WSGI":
            raise TypeError(
                f"{what} authorize {authorize!r} is an async function; a WSGI server cannot "
                "await it. Give a plain function, or serve with depot.asgi."
            )
        if not isinstance(root_path, str) or (root_path and not root_path.startswith("/")):
            raise ValueError(f"{what} root_path must be '' or start with '/', not {root_path!r}.")
        self.mountpoint = mountpoint
        self.prefix = mountpoint.rstrip("/") + "/"
        self.cache_max_age = max_age_seconds(cache_max_age)
        self.inline_types = frozenset(
            t.lower() for t in (DEFAULT_INLINE_TYPES if inline_types is None else inline_types)
        )
        self.offload = offload.lower() if offload else None
        self.offload_location = offload_location.rstrip("/")
        self.authorize = authorize
        self.authorize_is_async = is_async
        self.root_path = root_path.rstrip("/")

    def route(self, path: str) -> tuple[str, str] | None:
        """``(depot name, file id)`` for a path under the mountpoint, else None.

        Either part may be empty or hold a ``/`` (a 404, decided by the caller):
        every path under the mountpoint is the middleware's to answer.
        """
        if path.startswith(self.prefix):
            depot_name, _, file_id = path[len(self.prefix) :].partition("/")
            return depot_name, file_id
        if path == self.mountpoint:
            return "", ""
        return None


def _is_async(function: Callable[..., Any]) -> bool:
    call = getattr(function, "__call__", None)  # noqa: B004 (an object with an async __call__)
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(call)
