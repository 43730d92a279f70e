"""The async storage API: ``await storage.acreate(...)``, ``async for block in stored_file``.

Each method runs the blocking call of the sync API (``create()``, ``read()``...)
in a worker thread with :func:`anyio.to_thread.run_sync`, so it works under
asyncio and trio alike, and the event loop keeps running while the backend
works. It is not native async I/O: every backend, a third-party one included,
gets these methods from :class:`~depot.io.interfaces.FileStorage` and
:class:`~depot.io.interfaces.StoredFile` without implementing anything.

Content that comes from async code (an ASGI request body, a Starlette or
FastAPI ``UploadFile``) is handed to the backend as a stream whose ``read()``,
called in the worker thread, fetches the next chunk from the event loop with
:func:`anyio.from_thread.run`: the upload streams, one chunk at a time.

anyio is imported when a method is first awaited, not with depot: the sync
API needs nothing of it.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from depot.io._chunks import BLOCK_SIZE, _checked
from depot.io._fileinfo import FileIntent, _carried_name, _carried_type, byte_view

if TYPE_CHECKING:
    from depot.io.interfaces import FileContent, StoredFile

__all__ = [
    "AsyncContent",
    "blocking_content",
    "AsyncStorageMixin",
    "AsyncStoredFileMixin",
    "SupportsAsyncRead",
]

_T = TypeVar("_T")
_File = TypeVar("_File", bound="AsyncStoredFileMixin")


class _Storage(Protocol):
    """What the mixin needs of its FileStorage: the sync API."""

    def create(
        self, content: FileContent, filename: str | None = ..., content_type: str | None = ...
    ) -> str: ...
    def get(self, file_or_id: StoredFile | str) -> StoredFile: ...
    def replace(
        self,
        file_or_id: StoredFile | str,
        content: FileContent,
        filename: str | None = ...,
        content_type: str | None = ...,
    ) -> str: ...
    def delete(self, file_or_id: StoredFile | str) -> None: ...
    def exists(self, file_or_id: StoredFile | str) -> bool: ...
    def list(self) -> list[str]: ...


class _Readable(Protocol):
    """What the mixin needs of its StoredFile."""

    @property
    def closed(self) -> bool: ...
    def read(self, n: int = ..., /) -> bytes: ...
    def close(self) -> None: ...
    async def aclose(self) -> None: ...


class SupportsAsyncRead(Protocol):
    """An object with an async ``read(n)``: Starlette's ``UploadFile``, an aiofiles file."""

    async def read(self, size: int = -1, /) -> bytes: ...


#: What ``acreate()`` and ``areplace()`` accept besides what ``create()`` does:
#: an async iterable of bytes (an ASGI request body: ``request.stream()``), or an
#: object with an async ``read(n)``.
AsyncContent = AsyncIterable[bytes | bytearray | memoryview] | SupportsAsyncRead


def _anyio(caller: str) -> ModuleType:
    """anyio with its thread modules loaded; ImportError naming the extra if missing."""
    try:
        import anyio
        import anyio.from_thread
        import anyio.lowlevel
        import anyio.to_thread
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] != "anyio":
            raise
        # Imported here, not at the top: depot._settings imports depot.io.interfaces,
        # which imports this module.
        from depot._settings import missing_dependency_message

        raise ImportError(f"{caller}: {missing_dependency_message(__name__, 'anyio')}") from exc
    return anyio


async def _in_thread(caller: str, func: Callable[..., _T], *args: Any) -> _T:
    """``func(*args)`` in a worker thread; a cancellation waits for it to return.

    The thread is never abandoned: a call cut off half-way would leave a
    backend's write or a file's position in an unknown state. Once ``func``
    returned, its result is handed back even if the task was cancelled
    meanwhile; the cancellation is raised at the caller's next ``await``.
    If ``func`` raised and the task was cancelled, the cancellation is raised:
    whatever a backend made of the cancelled read of async content (its own
    error, say), the caller sees that it was cancelled.
    """
    anyio = _anyio(caller)
    try:
        result: _T = await anyio.to_thread.run_sync(func, *args)
    except BaseException:
        if anyio.current_effective_deadline() == -math.inf:
            await anyio.lowlevel.checkpoint()
        raise
    return result


class _AsyncSourceReader:
    """A blocking stream over async content, for a backend running in a worker thread.

    Each ``read(n)`` runs one step of the async source in the event loop
    (:func:`anyio.from_thread.run`) and waits for it, so at most about ``n``
    bytes are held here. It cannot seek: backends read it once, from where it stands.
    A cancellation of the task that awaits the upload is raised by the
    ``read()`` that waits for the source, and so goes up through the backend,
    which discards what it had written.
    """

    def __init__(self, anyio: ModuleType, content: Any, filename: str | None) -> None:
        # Read by create() as it reads an upload object's (depot.io._fileinfo).
        self.filename = filename
        self.content_type: str | None = None
        self._anyio = anyio
        self._read = content.read if _has_async_read(content) else None
        self._iterator: AsyncIterator[Any] | None = (
            None if self._read is not None else content.__aiter__()
        )
        self._rest = memoryview(b"")
        self.exhausted = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(BLOCK_SIZE), b""))
        if self._read is not None:
            return _as_bytes(self._anyio.from_thread.run(self._read_chunk, n))
        if not self._rest:
            chunk = self._anyio.from_thread.run(self._next_chunks, n)
            if not chunk:
                return b""
            if len(chunk) <= n:
                return chunk
            self._rest = memoryview(chunk)
        part, self._rest = self._rest[:n], self._rest[n:]
        return bytes(part)

    async def _read_chunk(self, n: int) -> Any:
        await self._unless_cancelled()
        assert self._read is not None
        return await self._read(n)

    async def _next_chunks(self, n: int) -> bytes:
        """The next chunks, joined up to ``n`` bytes or more; empty only at the end.

        Taken in one visit to the event loop, so that the small chunks of an
        ASGI request body (64 KiB) cost one thread switch per read, not each.
        """
        await self._unless_cancelled()
        assert self._iterator is not None
        pieces: list[bytes] = []
        size = 0
        while size < n and not self.exhausted:
            try:
                chunk = await self._iterator.__anext__()
            except StopAsyncIteration:
                self.exhausted = True
                break
            if chunk:  # an empty one is no end: only StopAsyncIteration is
                pieces.append(_as_bytes(chunk))
                size += len(pieces[-1])
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def _unless_cancelled(self) -> None:
        """Raise the cancellation if the task awaiting the upload was cancelled already.

        Each step runs in a task of its own, in the cancel scope of the
        awaiting task. Under asyncio, a scope cancelled while the backend was
        busy (no step running) has stopped delivering its cancellation by
        the time the next step starts, which would then wait for the source
        for ever: a client that stopped sending would hold the upload, and
        its thread, although the request was cancelled (anyio discussion
        #1427). So each step first looks at its scope itself.
        """
        if self._anyio.current_effective_deadline() == -math.inf:
            await self._anyio.lowlevel.checkpoint()  # raises it, where the scope still delivers
            raise self._anyio.get_cancelled_exc_class()()

    async def aclose(self) -> None:
        """Close an async generator left half-read (the backend failed), so its cleanup runs."""
        if self._iterator is None or self.exhausted:
            return
        aclose = getattr(self._iterator, "aclose", None)
        if aclose is not None:
            await aclose()


def _as_bytes(chunk: Any) -> bytes:
    # A producer may reuse a bytearray for its next chunk; the memory backend
    # keeps every chunk until the end, so each is made bytes of its own.
    chunk = _checked(chunk)
    if isinstance(chunk, memoryview):
        chunk = byte_view(chunk)
    return chunk if type(chunk) is bytes else bytes(chunk)


def _has_async_read(content: object) -> bool:
    return inspect.iscoroutinefunction(getattr(content, "read", None))


def _is_async(content: object) -> bool:
    # An async read() wins over __aiter__: an aiofiles file iterates lines.
    return _has_async_read(content) or hasattr(type(content), "__aiter__")


@asynccontextmanager
async def _blocking_content(caller: str, content: Any) -> AsyncIterator[Any]:
    """``content`` as ``create()`` takes it: async content becomes a blocking stream.

    The stream carries the name and type of the async content (an
    ``UploadFile``'s ``filename`` and ``content_type``, or a FileIntent's) as an
    upload object does, so explicit arguments still win, as in ``create()``,
    and a backend that reads its content itself (not through ``fileinfo()``)
    is handed a plain readable stream.
    """
    inner, name, ctype = (
        content.fileinfo if isinstance(content, FileIntent) else (content, None, None)
    )
    if not _is_async(inner):
        yield content
        return
    anyio = _anyio(caller)
    seek = getattr(inner, "seek", None)
    if _has_async_read(inner) and inspect.iscoroutinefunction(seek):
        # create() reads a seekable stream from its start, as filedepot did:
        # an UploadFile the app already read from is stored whole all the same.
        with contextlib.suppress(OSError):  # io.UnsupportedOperation: read from where it is
            await seek(0)
    reader = _AsyncSourceReader(anyio, inner, name or _carried_name(inner))
    reader.content_type = ctype or _carried_type(inner)
    try:
        yield reader
    finally:
        with anyio.CancelScope(shield=True):
            await reader.aclose()


class AsyncStorageMixin:
    """The async API of :class:`~depot.io.interfaces.FileStorage`: each sync method, awaited.

    Every method runs its sync counterpart in a worker thread (anyio, so under
    asyncio or trio), takes the same arguments and raises the same errors: a
    missing file is a :class:`~depot.exceptions.StoredFileNotFoundError` (a
    ``FileNotFoundError``), a malformed id a
    :class:`~depot.exceptions.InvalidFileIdError` (a ``ValueError``). They
    need anyio (the ``asgi`` extra); without it they raise ImportError.

    ``acreate()`` and ``areplace()`` take what ``create()`` takes, and also
    async content: an async iterable of bytes (``request.stream()`` of
    Starlette), or an object with an async ``read(n)`` (Starlette's and
    FastAPI's ``UploadFile``), alone or in a
    :class:`~depot.io.utils.FileIntent`. It is streamed to the backend one
    chunk at a time, never whole in memory (unless the backend keeps files in
    memory). The file name and type are taken from the object's ``filename``
    and ``content_type`` when not given, as ``create()`` takes them from a
    ``cgi.FieldStorage``. An object with an async ``seek`` is read from its
    start, as ``create()`` reads a seekable file.

    Cancellation never leaves a partial file; the worker thread is never
    abandoned. A task cancelled while its async content is being read (or
    while the backend writes what was read) stops reading at once, even if
    the source never sends again: the cancellation is raised by the backend's
    next read, goes up through it, and the backend discards what it had
    written (memory: nothing stored; local: its hidden temporary directory
    removed; S3: its multipart upload aborted; GridFS: the chunks it sent
    removed; GCS: its resumable upload never finished), so nothing is stored.
    A task cancelled once the content was read (bytes, a sync file, or async
    content at its end) waits for the backend to finish: the file is stored
    whole, the id is returned, and the cancellation is raised at the caller's
    next ``await``. ``areplace()`` alike leaves the old content or the new one.

    .. versionadded:: 1.0
    """

    async def acreate(
        self: _Storage,
        content: FileContent | AsyncContent,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """Store a new file and return its id: :meth:`create` in a worker thread.

        .. versionadded:: 1.0
        """
        caller = f"{type(self).__name__}.acreate()"
        async with _blocking_content(caller, content) as blocking:
            return await _in_thread(caller, self.create, blocking, filename, content_type)

    async def aget(self: _Storage, file_or_id: StoredFile | str) -> StoredFile:
        """Open a stored file: :meth:`get` in a worker thread.

        .. versionadded:: 1.0
        """
        return await _in_thread(f"{type(self).__name__}.aget()", self.get, file_or_id)

    async def areplace(
        self: _Storage,
        file_or_id: StoredFile | str,
        content: FileContent | AsyncContent,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """Replace a file's content, keeping its id: :meth:`replace` in a worker thread.

        .. versionadded:: 1.0
        """
        caller = f"{type(self).__name__}.areplace()"
        async with _blocking_content(caller, content) as blocking:
            return await _in_thread(
                caller, self.replace, file_or_id, blocking, filename, content_type
            )

    async def adelete(self: _Storage, file_or_id: StoredFile | str) -> None:
        """Delete a file: :meth:`delete` in a worker thread.

        .. versionadded:: 1.0
        """
        await _in_thread(f"{type(self).__name__}.adelete()", self.delete, file_or_id)

    async def aexists(self: _Storage, file_or_id: StoredFile | str) -> bool:
        """Whether the file exists: :meth:`exists` in a worker thread.

        .. versionadded:: 1.0
        """
        return await _in_thread(f"{type(self).__name__}.aexists()", self.exists, file_or_id)

    async def alist(self: _Storage) -> list[str]:
        """The ids of the stored files: :meth:`list` in a worker thread.

        .. versionadded:: 1.0
        """
        return await _in_thread(f"{type(self).__name__}.alist()", self.list)


class AsyncStoredFileMixin:
    """The async API of :class:`~depot.io.interfaces.StoredFile`.

    ``await f.aread(n)`` and ``await f.aclose()`` run :meth:`read` and
    :meth:`close` in a worker thread; ``async for block in f`` yields blocks of
    bytes as sync iteration does; ``async with f:`` closes it at the end. A
    cancelled read finishes in its thread first: the bytes it read are
    returned, and the cancellation is raised at the caller's next ``await``.

    .. versionadded:: 1.0
    """

    async def aread(self: _Readable, n: int = -1) -> bytes:
        """Read up to ``n`` bytes; all that is left when ``n`` is -1.

        .. versionadded:: 1.0
        """
        return await _in_thread(f"{type(self).__name__}.aread()", self.read, n)

    async def aclose(self: _Readable) -> None:
        """Close the file: :meth:`close` in a worker thread.

        .. versionadded:: 1.0
        """
        await _in_thread(f"{type(self).__name__}.aclose()", self.close)

    def __aiter__(self: _File) -> _File:
        _check_open(self)
        return self

    async def __anext__(self: _Readable) -> bytes:
        chunk = await _in_thread(f"{type(self).__name__}: async for", self.read, BLOCK_SIZE)
        if not chunk:
            raise StopAsyncIteration
        return chunk

    async def __aenter__(self: _File) -> _File:
        _check_open(self)
        return self

    async def __aexit__(
        self: _Readable,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


def _check_open(file: object) -> None:
    # What io.IOBase's __iter__ and __enter__ check.
    if getattr(file, "closed", False):
        raise ValueError("I/O operation on closed file.")


#: For front ends that hand an async request body to the sync storage API.
blocking_content = _blocking_content
