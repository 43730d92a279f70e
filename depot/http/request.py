"""What the HTTP core knows of one request, whichever front end (WSGI, ASGI) received it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

__all__ = ["EnvironHeaders", "RequestFacts", "current_mount", "request_path"]


class RequestFacts:
    """One request as the HTTP core and an ``authorize`` hook see it.

    :param method: ``GET``, ``HEAD``, ...
    :param path: the path under the application's mount, as text (what
        :meth:`~depot.manager.DepotManager.url_for` builds, without the mount).
    :param query_string: the raw query string, without ``?``.
    :param headers: the request headers by lower-case name.
    :param script_name: where the application is mounted (WSGI ``SCRIPT_NAME``,
        ASGI ``root_path``), ``""`` at the root.
    :param raw: the WSGI environ or the ASGI scope, for an application's own
        ``authorize`` hook (its session cookie, its user).

    .. versionadded:: 1.0
    """

    __slots__ = (
        "_preconditions",
        "headers",
        "method",
        "path",
        "query_string",
        "raw",
        "script_name",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query_string: str = "",
        headers: Mapping[str, str] | None = None,
        script_name: str = "",
        raw: Any = None,
    ) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers: Mapping[str, str] = headers if headers is not None else {}
        self.script_name = script_name
        self.raw = raw
        self._preconditions: tuple[str | None, str | None, str | None, str | None] | None = None

    def preconditions(self) -> tuple[str | None, str | None, str | None, str | None]:
        """If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since; None for absent.

        Read once: the HTTP core asks for them at several steps of one answer.
        """
        found = self._preconditions
        if found is None:
            headers = self.headers
            if type(headers) is EnvironHeaders:
                found = headers.preconditions()
            else:
                get = headers.get
                found = (
                    get("if-match"),
                    get("if-unmodified-since"),
                    get("if-none-match"),
                    get("if-modified-since"),
                )
            self._preconditions = found
        return found

    def __repr__(self) -> str:
        return f"<RequestFacts {self.method} {self.path!r}>"


#: The environ keys of the headers the HTTP core reads on every request.
_ENVIRON_KEYS = {
    name: "HTTP_" + name.upper().replace("-", "_")
    for name in (
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "range",
        "if-range",
    )
}


_ABSENT = (None, None, None, None)


class EnvironHeaders(Mapping[str, str]):
    """A WSGI environ's request headers by lower-case name, read only when asked for.

    Most requests need two or three headers: copying them all would cost more
    than the rest of a 304.
    """

    __slots__ = ("_environ",)

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self._environ = environ

    def __getitem__(self, name: str) -> str:
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        value = self._environ[key]
        if not isinstance(value, str):
            raise KeyError(name)
        return value

    def get(self, name: str, default: Any = None) -> Any:  # the hot path: no exception
        key = _ENVIRON_KEYS.get(name)
        if key is None:
            key = "HTTP_" + name.upper().replace("-", "_")
            if name in ("content-type", "content-length"):
                key = key[5:]
        value = self._environ.get(key)
        return value if isinstance(value, str) else default

    def preconditions(self) -> tuple[str | None, str | None, str | None, str | None]:
        """As :meth:`RequestFacts.preconditions`, in one call (each get() is one more)."""
        get = self._environ.get
        values = (
            get("HTTP_IF_MATCH"),
            get("HTTP_IF_UNMODIFIED_SINCE"),
            get("HTTP_IF_NONE_MATCH"),
            get("HTTP_IF_MODIFIED_SINCE"),
        )
        if values == _ABSENT:  # the most common request of all
            return values
        if_match, if_unmodified_since, if_none_match, if_modified_since = values
        return (
            if_match if isinstance(if_match, str) else None,
            if_unmodified_since if isinstance(if_unmodified_since, str) else None,
            if_none_match if isinstance(if_none_match, str) else None,
            if_modified_since if isinstance(if_modified_since, str) else None,
        )

    def __iter__(self) -> Iterator[str]:
        for key, value in self._environ.items():
            if not isinstance(value, str):
                continue
            if key.startswith("HTTP_"):
                yield key[5:].replace("_", "-").lower()
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                yield key.replace("_", "-").lower()

    def __len__(self) -> int:
        return sum(1 for _ in self)


def request_path(raw_path: str) -> str:
    """A request path given as PEP 3333 text (one character per byte) as the text it encodes.

    A link holding non-ASCII text (a mountpoint or depot name) is requested as
    its UTF-8 bytes. Bytes that are not UTF-8 become lone surrogates, which no
    mountpoint, depot name or file id holds. A path with characters above
    U+00FF was decoded already (not PEP 3333, some test clients) and is read
    as it is.
    """
    if raw_path.isascii():
        return raw_path
    try:
        raw = raw_path.encode("latin-1")
    except UnicodeEncodeError:
        return raw_path
    return raw.decode("utf-8", "surrogateescape")


#: The mount (SCRIPT_NAME / root_path) of the request a front end is serving,
#: so that ``url_for`` called while the application answers it builds URLs
#: that work from where the application is mounted.
current_mount: ContextVar[str | None] = ContextVar("depot_current_mount", default=None)
