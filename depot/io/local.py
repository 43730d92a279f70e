"""A storage in a directory of the local disk.

Settings: ``storage_path`` (required), ``fsync`` (default true).

The layout is filedepot 0.12's, so either library reads what the other wrote::

    <storage_path>/<file id>/file            the bytes
    <storage_path>/<file id>/metadata.json   filename, content_type, content_length, last_modified
    <storage_path>/<file id>/checksum        "sha256:<hex>" (depot only; filedepot ignores it)

Writes are atomic. ``create()`` fills a hidden temporary directory and renames it
into place. ``replace()`` writes ``file.new``, ``checksum.new`` and
``metadata.json.new`` beside the current files, then renames them over the old
ones; renaming ``file.new`` is the commit point. A reader that finds
``metadata.json.new`` but no ``file.new`` knows the new bytes are in place and
reads the new metadata, so a crash at any step leaves the old file or the new
one, never a mix. With ``fsync`` on, data and directories are flushed to disk
before each rename, so this holds across a power cut too.

Reads take no lock, so a reader never waits for a replace's upload.
``get()`` opens the data file first and keeps the descriptor; it then reads the
metadata and checks that ``file`` is still the inode it opened. A replace that
committed in between changes that inode (or removes the pending metadata the
reader chose), and the reader starts again: the metadata it returns always
describes the bytes it holds, and a replaced file is never "not found".

Each storage keeps the metadata it parsed, per file, and reuses it while the
status of the file's directory and of its metadata.json is what it was (see
``_MetadataCache``): a request for a file served before opens its data and
looks at two statuses instead of opening and parsing metadata.json and
checksum. Whatever changes a file (a replace from any process, a delete, an
edit in place, a planted entry) changes one of those statuses.

Nothing inside ``storage_path`` is followed if it is a symbolic link: a linked
``<id>`` directory, or a linked ``file``, ``metadata.json`` or ``checksum``
inside one, is not a stored file (a linked ``checksum`` reads as none), and
linked leftovers are removed, not followed. ``storage_path`` itself may be a link.

Leftovers of a replace killed mid-way are cleaned by the next ``get()``,
``list()`` or ``replace()`` of that file, once a non-blocking attempt at the
directory's lock shows that no replace is running.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import shutil
import stat
import threading
import time
from collections.abc import Iterable
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any

from depot._headers import DEFAULT_CONTENT_TYPE, DEFAULT_FILENAME
from depot._settings import as_bool
from depot.exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    CorruptMetadataError,
    StoredFileNotFoundError,
)
from depot.io._chunks import BLOCK_SIZE, is_checksum
from depot.io._ids import check_file_id, new_file_id
from depot.io.interfaces import FileStorage, NewVersion, StoredFile, check_metadata
from depot.io.utils import _modified_now, parse_timestamp
from depot.uploads._local import LocalStaging

try:
    import fcntl
except ImportError:  # Windows: replace() and delete() are then not serialised.
    fcntl = None  # type: ignore[assignment]

__all__ = ["LocalFileStorage", "LocalStoredFile"]

log = logging.getLogger("depot.io.local")

_BACKEND = "LocalFileStorage"
_DATA, _METADATA, _CHECKSUM = "file", "metadata.json", "checksum"
_PENDING = ".new"
_TEMP_PREFIX, _TRASH_PREFIX = ".depot-tmp-", ".depot-trash-"
#: The directory of chunked uploads in progress, under storage_path.
UPLOADS_DIRECTORY = ".depot-uploads"
#: What list() cannot tell from a write in progress (an empty temporary
#: directory; anything, without flock) it removes once it is this old.
_STALE_AFTER = 3600.0
#: An empty, unlocked temporary directory younger than this may be a write
#: that has made it and not locked it yet: a write of the same id waits.
_JUST_MADE = 2.0
#: get() starts again each time a replace commits while it opens the file; each
#: try lasts microseconds, so this many in a row means something is wrong.
_OPEN_ATTEMPTS = 1000
#: metadata.json holds a name of at most 255 characters: anything near this is not ours.
_MAX_METADATA = 1024 * 1024

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# Plain descriptors rather than open(): creating a small file through the io
# stack costs several times the system calls themselves. O_NOFOLLOW: a planted
# link is never opened through; O_NONBLOCK: a planted FIFO never blocks a read.
_DIRECTORY = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC
_READ = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | _CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC


class LocalStoredFile(StoredFile):
    """A file of a :class:`LocalFileStorage`, open from the moment it is made; seekable.

    :raises depot.exceptions.StoredFileNotFoundError: no such file, or one that
        is a symbolic link or not a regular file.

    .. versionchanged:: 1.0
       The data file is opened at once, with the metadata of that very version,
       so a file deleted or replaced afterwards still reads whole.
    """

    def __init__(
        self, file_id: str, local_path: str, *, cache: _MetadataCache | None = None
    ) -> None:
        self._fd = -1
        self._closed = False
        check_file_id(file_id, _BACKEND)
        self._open(file_id, local_path, cache)

    @classmethod
    def _of_checked_id(
        cls, file_id: str, local_path: str, cache: _MetadataCache | None
    ) -> LocalStoredFile:
        """As the constructor, for an id the storage has just checked (once per request)."""
        self = cls.__new__(cls)
        self._fd = -1
        self._closed = False
        self._open(file_id, local_path, cache)
        return self

    @classmethod
    def _unopened(
        cls, file_id: str, local_path: str, identity: tuple[int, int], info: dict[str, Any]
    ) -> LocalStoredFile:
        """A closed file carrying ``info``, the metadata of the version ``identity`` (peek())."""
        self = cls.__new__(cls)
        self._fd = -1
        self._closed = True
        self._folder = local_path
        self._cache = None
        self._size = info["content_length"]
        self._identity = identity
        self.file_id = file_id
        self._set_checked(info, self._size)
        return self

    def _open(self, file_id: str, local_path: str, cache: _MetadataCache | None) -> None:
        self._folder = local_path
        self._cache = cache
        # A bare descriptor, not a FileIO: get() is on the path of every
        # request, and FileIO costs system calls of its own. Being ours, it is
        # closed by IOBase's finalizer if the file is dropped unclosed.
        self._fd, opened, info, checked = _open_version(file_id, local_path, cache)
        self._size = opened.st_size
        self._identity = (opened.st_ino, opened.st_dev)
        if checked:  # the cache's, checked when stored: the same values, set as they are
            self.file_id = file_id
            self._set_checked(info, self._size)
            return
        try:
            super().__init__(file_id, **_with_length(info, self._size))
        except BaseException:
            self.close()
            raise

    def _set_checked(self, info: dict[str, Any], size: int) -> None:
        """Set the metadata attributes from a cache entry (checked when it was stored)."""
        self.filename = info["filename"]
        self.content_type = info["content_type"]
        self.last_modified = info["last_modified"]
        length = info["content_length"]
        self.content_length = size if length is None else length
        self.checksum = info["checksum"]

    @property
    def _file_path(self) -> str:
        """The path of the file's data (filedepot's name, which applications' tests reach)."""
        return _join(self._folder, _DATA)

    @property
    def _metadata_path(self) -> str:
        """The path of the file's metadata.json (filedepot's name, which
        applications' tests reach)."""
        return _join(self._folder, _METADATA)

    def _follow_replace(self) -> None:
        # A replace renames a new 'file' into place: a different inode.
        now = _lstat(self._file_path, None)
        if now is None or (now.st_ino, now.st_dev) == self._identity:
            return  # the same version, or deleted: the bytes held are read
        try:
            fd, opened, info, _ = _open_version(self.file_id, self._folder, self._cache)
        except StoredFileNotFoundError:
            return
        try:
            self._set_metadata(**_with_length(info, opened.st_size))
        except BaseException:
            os.close(fd)
            raise
        os.close(self._fd)
        self._fd, self._size = fd, opened.st_size
        self._identity = (opened.st_ino, opened.st_dev)

    def read(self, n: int | None = -1) -> bytes:
        self._check_open()
        if n is not None and n >= 0:
            return os.read(self._fd, n)
        # All that is left, which is at most the size the file had when opened
        # (committed files never change): one read, short of what was asked,
        # which a regular file returns only at its end.
        data = os.read(self._fd, self._size + 1)
        if len(data) <= self._size:
            return data
        parts = [data]  # it grew: written in place, by something other than depot
        while chunk := os.read(self._fd, BLOCK_SIZE):
            parts.append(chunk)
        return b"".join(parts)

    def seekable(self) -> bool:
        return True

    @property
    def held_size(self) -> int | None:
        """The data's size when it was opened (depot never changes a committed file)."""
        return None if self._closed else self._size

    def fileno(self) -> int:
        """The OS file descriptor, so that WSGI servers can ``sendfile()`` it."""
        self._check_open()
        return self._fd

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        return os.lseek(self._fd, offset, whence)

    def tell(self) -> int:
        self._check_open()
        return os.lseek(self._fd, 0, io.SEEK_CUR)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._fd >= 0:
            os.close(self._fd)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def local_path(self) -> str | None:
        """The absolute path of the data file, while it names the very bytes this file reads.

        For servers and front servers that send a file by its path (``sendfile``
        by path, ASGI ``pathsend``, ``X-Sendfile``). The version is held, as by
        a read. None once the file is closed, or when the path no longer names
        the version held (replaced or deleted since, or a link planted there):
        the bytes are then only to be had through :meth:`fileno` or a read.
        A path can be replaced between this check and its use by another
        process; a server that needs exactly these bytes uses the descriptor.

        .. versionadded:: 1.0
        """
        if self._closed:
            return None
        self._first_read()
        now = _lstat(self._file_path, None)
        if now is None or not stat.S_ISREG(now.st_mode):
            return None
        if (now.st_ino, now.st_dev) != self._identity:
            return None
        return os.path.abspath(self._file_path)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on closed file.")
        if not self._version_held:
            self._first_read()


def _with_length(info: dict[str, Any], size: int) -> dict[str, Any]:
    if info["content_length"] is None:  # written by a very old filedepot
        return {**info, "content_length": size}
    return info


class LocalFileStorage(FileStorage):
    """Stores each file in a directory of its own under ``storage_path``.

    :param storage_path: the directory; created on the first write.
    :raises depot.exceptions.ConfigurationError: ``storage_path`` is a file, or
        does not exist and cannot be created (under a file, or in a directory
        this process may not write to).
    :param fsync: flush every write to disk before it becomes visible (default).
        ``false`` is faster and still atomic against a crashed process, but a
        power cut may lose files written in the last seconds.

    .. versionchanged:: 1.0
       Writes are atomic and durable; ids are uuid4; ``fsync`` added; links
       inside ``storage_path`` are never followed; a ``storage_path`` that can
       hold no file is refused at once; ``get()`` reuses the metadata it
       parsed while the file's status shows it unchanged.
    """

    records_what_it_reads = True  # the digest of the bytes written, the time of timestamp()

    def __init__(self, storage_path: str | os.PathLike[str], fsync: bool | str = True) -> None:
        self.storage_path = os.fspath(storage_path)
        self.fsync = as_bool(fsync, "fsync")
        _check_storage_path(self.storage_path)
        self._metadata_cache = _MetadataCache()

    def get(self, file_or_id: StoredFile | str) -> LocalStoredFile:
        cache = self._metadata_cache
        # An id the cache holds was checked when it was stored.
        fileid = file_or_id if file_or_id in cache else self._checked_id(file_or_id)
        assert isinstance(fileid, str)
        return LocalStoredFile._of_checked_id(fileid, self._path(fileid), cache)

    def peek(self, file_or_id: StoredFile | str) -> LocalStoredFile | None:
        """The metadata of a file served before, from the cache, if its status is unchanged.

        Two ``lstat`` calls and no open: a revalidation (``304``) of a file
        served before reads nothing. None for a file not cached (or changed
        since): :meth:`get` reads it, and caches it.

        .. versionadded:: 1.0
        """
        # An id the cache holds was checked when it was stored.
        fileid = file_or_id if file_or_id in self._metadata_cache else self._checked_id(file_or_id)
        assert isinstance(fileid, str)
        folder = self._path(fileid)
        found = self._metadata_cache.current(fileid, folder)
        if found is None:
            return None
        identity, info = found
        if info["content_length"] is None:  # a very old filedepot's: its size says
            return None
        return LocalStoredFile._unopened(fileid, folder, identity, info)

    def _write_over(self, fileid: str, new: NewVersion, restoring: bool) -> None:
        folder = self._path(fileid)
        if restoring and not _is_directory(folder):
            self._write(fileid, new)
            return
        with _locked(folder, fileid) as dir_fd:
            _finish_interrupted_replace(dir_fd)
            new.keep_from(lambda: LocalStoredFile(fileid, folder))
            try:
                self._write_files(dir_fd, _PENDING, new)
                # The metadata is renamed into place after the commit: were a
                # directory in its way, the new data would be in place and the
                # caller told the replace failed. So it fails now, changing nothing.
                _refuse_planted(fileid, folder, dir_fd)
            except BaseException:
                _discard_pending(dir_fd)
                raise
            _rename(_DATA + _PENDING, _DATA, dir_fd)  # commit
            _finish_interrupted_replace(dir_fd)
            self._sync(dir_fd)
        # The new files' status no longer matches the entry; this only frees it.
        self._metadata_cache.forget(fileid)

    def delete(self, file_or_id: StoredFile | str) -> None:
        fileid = self._checked_id(file_or_id)
        folder = self._path(fileid)
        try:
            with _locked(folder, fileid):
                # Renamed away first, so the id vanishes at once and whole. The
                # lock is held until the trash is gone: list() removes only
                # trash whose lock is free, left by a delete that was killed.
                trash = self._path(_TRASH_PREFIX + new_file_id())
                os.rename(folder, trash)
                self._sync_root()
                shutil.rmtree(trash, ignore_errors=True)
        except StoredFileNotFoundError:
            return
        finally:
            self._metadata_cache.forget(fileid)

    def exists(self, file_or_id: StoredFile | str) -> bool:
        fileid = self._checked_id(file_or_id)
        dir_fd = _open_entry(self._path(fileid), _DIRECTORY)
        if dir_fd is None:
            return False
        try:
            return _is_file(_METADATA, dir_fd) and _is_file(_DATA, dir_fd)
        finally:
            os.close(dir_fd)

    def list(self) -> list[str]:
        """Return the ids of the stored files; also removes leftovers of crashes.

        What a killed replace(), create() or delete() left is finished or
        removed at once, unless the directory's lock shows a writer still at
        work; a leftover that is a link is removed without being followed.
        """
        try:
            entries = list(os.scandir(self.storage_path))
        except FileNotFoundError:
            return []
        ids = []
        for entry in entries:
            if entry.name.startswith((_TEMP_PREFIX, _TRASH_PREFIX)):
                _remove_leftover(entry)
                continue
            try:
                fileid = check_file_id(entry.name, _BACKEND)
            except ValueError:
                continue
            if not entry.is_dir(follow_symlinks=False):
                continue  # a link, or a stray file: not a stored file
            if _has_pending(entry.path):
                _clean_interrupted_replace(entry.path)
            ids.append(fileid)
        return ids

    def _path(self, name: str) -> str:
        return _join(self.storage_path, name)

    def _staging(self) -> LocalStaging:
        # Beside the files, so that every process serving the depot shares the
        # uploads; list() skips the directory (its name is no file id).
        return LocalStaging(self._path(UPLOADS_DIRECTORY), self.fsync)

    def _write(self, fileid: str, new: NewVersion) -> None:
        temp = self._path(_TEMP_PREFIX + fileid)
        try:
            os.mkdir(temp)
        except FileNotFoundError:  # the first write: storage_path is made on demand
            os.makedirs(self.storage_path, exist_ok=True)
            os.mkdir(temp)
        except FileExistsError:
            # Left by a write of this same id that was killed: a restore
            # (replace(f, f), as depot.ops.copy_depot does) run again after a crash.
            _remove_abandoned(temp, fileid)
            os.mkdir(temp)
        try:
            dir_fd = os.open(temp, _DIRECTORY)
            try:
                # Locked while it is written, so that list() can tell this
                # write from what a killed one left (see _remove_leftover).
                if fcntl is not None:
                    fcntl.flock(dir_fd, fcntl.LOCK_EX)
                self._write_files(dir_fd, "", new)
                self._sync(dir_fd)
                os.rename(temp, self._path(fileid))
            finally:
                os.close(dir_fd)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        self._sync_root()

    def _write_files(self, dir_fd: int, suffix: str, new: NewVersion) -> None:
        # The data first: metadata.json.new present without file.new means
        # "committed" to readers, so it must never exist before file.new does.
        _write_file(_DATA + suffix, dir_fd, new.chunks(), self.fsync)
        digest = new.digest
        # The checksum is not flushed on its own: were it lost in a power cut
        # the file would read back with checksum None, like filedepot's files,
        # and it costs a whole fsync per write.
        _write_file(_CHECKSUM + suffix, dir_fd, (digest.checksum.encode(),), False)
        metadata = _metadata_json(new.filename, new.content_type, digest.length, _modified_now()[0])
        _write_file(_METADATA + suffix, dir_fd, (metadata,), self.fsync)

    def _sync(self, dir_fd: int) -> None:
        if self.fsync and os.name == "posix":
            os.fsync(dir_fd)

    def _sync_root(self) -> None:
        if self.fsync and os.name == "posix":
            # The root may be a link (a deploy's /var/files -> /mnt/...): followed.
            fd = os.open(self.storage_path, os.O_RDONLY | _CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _metadata_json(filename: str, content_type: str, length: int, modified: str) -> bytes:
    """metadata.json's bytes: what ``json.dumps()`` makes of the four keys, in that order.

    Written out here, at a tenth of the cost of ``json.dumps()`` of a dict,
    which was a tenth of a small create's Python time; each string is escaped
    as ``json.dumps()`` does (ASCII only), so the text is the same, byte for byte.
    """
    return (
        f'{{"filename": {_json_string(filename)}, '
        f'"content_type": {_json_string(content_type)}, '
        f'"content_length": {length:d}, '
        f'"last_modified": {_json_string(modified)}}}'
    ).encode("ascii")


def _join(folder: str, name: str) -> str:
    return folder + os.sep + name


def _check_storage_path(path: str) -> None:
    """Refuse, at configure(), a ``storage_path`` that can never hold a file.

    A path that does not exist yet is fine when it can be created (on the first
    write): its nearest existing ancestor must be a directory this process may
    write to. An existing directory that is not writable is accepted (a
    read-only reader of files another process writes) and logged.
    """
    what_to_do = (
        "Set depot.storage_path to a directory the application may write to "
        "(it is created on the first write if missing)."
    )
    if not path:
        raise ConfigurationError(f"storage_path is empty. {what_to_do}")
    if "\0" in path:
        raise ConfigurationError(f"storage_path {path!r} holds a NUL character. {what_to_do}")
    probe = path
    while True:
        try:
            found = os.stat(probe)
            break
        except (FileNotFoundError, NotADirectoryError):
            if os.path.islink(probe):
                raise ConfigurationError(
                    f"storage_path {path!r} cannot be used: {probe!r} is a symbolic link "
                    f"to {os.readlink(probe)!r}, which does not exist. {what_to_do}"
                ) from None
            parent = os.path.dirname(probe.rstrip(os.sep)) or os.curdir
            if parent == probe:
                raise
            probe = parent
        except OSError as exc:
            raise ConfigurationError(
                f"storage_path {path!r} cannot be used: {probe!r}: {exc.strerror}. {what_to_do}"
            ) from exc
    if not stat.S_ISDIR(found.st_mode):
        where = "is a file" if probe == path else f"cannot be created: {probe!r} is a file"
        raise ConfigurationError(f"storage_path {path!r} {where}, not a directory. {what_to_do}")
    if os.access(probe, os.W_OK | os.X_OK):
        return
    user = getattr(os, "getuid", lambda: "?")()
    if probe != path:
        raise ConfigurationError(
            f"storage_path {path!r} cannot be created: this process (uid {user}) may not "
            f"write to {probe!r}. Create it with write access for the application, or "
            f"choose another directory. {what_to_do}"
        )
    log.warning(
        "storage_path %r is not writable by this process (uid %s): files can be read, "
        "but create(), replace() and delete() will fail.",
        path,
        user,
    )


# --- the metadata cache --------------------------------------------------------

#: How many files' parsed metadata a storage keeps (a few hundred bytes each).
_CACHE_ENTRIES = 4096
#: Metadata changed less than this long ago is not cached. A file's status
#: stands for its bytes only once its timestamps can no longer repeat: every
#: write after this moment, in place or of a new file on a reused inode, gets
#: a later time. File systems count time in ticks (FAT: 2 s) and a file
#: server's clock may lag this one: 3 s covers both.
_SETTLED_NS = 3 * 10**9

_StatKey = tuple[int, int, int, int, int, int]


def _stat_key(found: os.stat_result) -> _StatKey:
    """What changes whenever a file is rewritten, renamed over or recreated."""
    # ctime too: utime() can set a rewritten file's mtime back, never its ctime.
    return (
        found.st_ino,
        found.st_dev,
        found.st_size,
        found.st_mtime_ns,
        found.st_ctime_ns,
        found.st_mode,
    )


class _MetadataCache:
    """StoredFile's keywords per file id, as parsed from metadata.json and checksum.

    An entry holds the status of the file's directory and of its metadata.json
    when they were read, and the data file's inode. It is used only while both
    statuses are unchanged and the data opened is that inode: every replace,
    delete, crash leftover or planted entry creates, removes or renames an
    entry of the directory, which changes its mtime and ctime (POSIX), and an
    edit of metadata.json in place (filedepot writes so) changes its own.
    Inodes are reused and times come in ticks, so nothing is stored that
    changed less than :data:`_SETTLED_NS` before it was read. Nothing is
    shared between storages or processes: another process's replace is seen
    in the status, like any other. (An edit in place of ``checksum`` alone,
    which neither depot nor filedepot makes, is not seen.)

    Lookups take no lock (a dict read is atomic); stores and removals do.
    """

    def __init__(self, size: int = _CACHE_ENTRIES, settled_ns: int = _SETTLED_NS) -> None:
        self._entries: dict[str, tuple[_StatKey, _StatKey, tuple[int, int], dict[str, Any]]]
        self._entries = {}
        self._size = size
        self._settled_ns = settled_ns
        self._lock = threading.Lock()

    def lookup(
        self, file_id: str, directory: os.stat_result, opened: os.stat_result, dir_fd: int
    ) -> dict[str, Any] | None:
        """The keywords cached for ``file_id`` (not to be changed), if they describe ``opened``.

        :param directory: the status of the file's directory, taken after ``opened``.
        """
        entry = self._entries.get(file_id)
        if (
            entry is None
            or entry[0] != _stat_key(directory)
            or entry[2] != (opened.st_ino, opened.st_dev)
        ):
            return None
        metadata = _lstat(_METADATA, dir_fd)
        if metadata is None or entry[1] != _stat_key(metadata):
            return None
        return entry[3]

    def __contains__(self, file_id: object) -> bool:
        return type(file_id) is str and file_id in self._entries

    def current(self, file_id: str, folder: str) -> tuple[tuple[int, int], dict[str, Any]] | None:
        """The data's inode and the keywords cached for ``file_id`` (not to be changed), if current.

        Without opening anything: the status of ``folder`` itself (a link
        there is not followed, and is not the directory cached), then that
        of its metadata.json. The directory unchanged since the entry was
        stored means no entry in it was made, removed or renamed (a replace,
        a delete, a leftover, a planted link), so ``file`` is still the inode
        cached; metadata.json unchanged means the metadata too. Both hold at
        the moment of the first status: the keywords describe the version
        current then. Nothing is read, so a link met on the way (the folder
        swapped between the two calls) leads to no bytes; the second status
        is of the very inode cached, unchanged, or the entry is not used.
        """
        entry = self._entries.get(file_id)
        if entry is None:
            return None
        try:
            if entry[0] != _stat_key(os.lstat(folder)):
                return None
            metadata = os.lstat(_join(folder, _METADATA))
        except (FileNotFoundError, NotADirectoryError):
            return None  # deleted (or swapped for a file) since: get() says which
        if entry[1] != _stat_key(metadata):
            return None
        return entry[2], entry[3]

    def store(
        self,
        file_id: str,
        directory: os.stat_result,
        metadata: os.stat_result,
        opened: os.stat_result,
        info: dict[str, Any],
    ) -> None:
        """Keep ``info``, read from ``metadata`` in ``directory`` to describe ``opened``.

        ``info`` has passed :func:`~depot.io.interfaces.check_metadata`: what
        the cache gives back is set on a file without checking it again.
        """
        changed = (
            directory.st_mtime_ns,
            directory.st_ctime_ns,
            metadata.st_mtime_ns,
            metadata.st_ctime_ns,
        )
        if time.time_ns() - max(changed) < self._settled_ns:
            return  # too recent (or in the future: another clock): its status may repeat
        entry = (
            _stat_key(directory),
            _stat_key(metadata),
            (opened.st_ino, opened.st_dev),
            dict(info),
        )
        with self._lock:
            self._entries.pop(file_id, None)
            while len(self._entries) >= self._size:
                del self._entries[next(iter(self._entries))]  # the oldest stored
            self._entries[file_id] = entry

    def forget(self, file_id: str) -> None:
        """Drop ``file_id``'s entry (this storage replaced or deleted it)."""
        with self._lock:
            self._entries.pop(file_id, None)


# --- reading one version -------------------------------------------------------


class _Changed(Exception):
    """A replace committed while get() was opening the file: start again."""


def _open_version(
    file_id: str, folder: str, cache: _MetadataCache | None
) -> tuple[int, os.stat_result, dict[str, Any], bool]:
    """Open the data of ``file_id`` and read the metadata of that same version.

    Return the data's descriptor, its status when opened, StoredFile's keywords
    (not to be changed: they may be the cache's), and whether they were
    checked already (they come from the cache). The committed metadata comes
    from ``cache`` when its files are unchanged.
    """
    dir_fd = _open_entry(folder, _DIRECTORY)
    if dir_fd is None:
        raise StoredFileNotFoundError(file_id, folder)
    try:
        for _ in range(_OPEN_ATTEMPTS):
            try:
                return _try_open_version(file_id, folder, dir_fd, cache)
            except _Changed:
                continue
    finally:
        os.close(dir_fd)
    raise BackendUnavailableError(
        f"File {file_id} in {folder} was replaced {_OPEN_ATTEMPTS} times while it was "
        "being opened; try again once the replaces stop."
    )


def _try_open_version(
    file_id: str, folder: str, dir_fd: int, cache: _MetadataCache | None
) -> tuple[int, os.stat_result, dict[str, Any], bool]:
    fd = _open_entry(_DATA, _READ, dir_fd)
    if fd is None:
        raise StoredFileNotFoundError(file_id, folder)
    pending: list[int] = []
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):  # a directory, a FIFO, a device
            raise StoredFileNotFoundError(file_id, folder)
        # Taken after the data was opened and before anything else is looked
        # at: an entry stored with this status describes what is read below.
        directory = None
        if cache is not None:
            directory = os.fstat(dir_fd)
            cached = cache.lookup(file_id, directory, opened, dir_fd)
            if cached is not None:
                return fd, opened, cached, True
        # The pending metadata is opened before file.new is looked for: a name
        # alone could be reused by the next replace, an open file cannot. Only
        # the next replace's commit removes its file.new, and that changes
        # 'file', which the last check below sees.
        # (access() first: on the hot path there is none, and a failed open
        # costs more than a look.)
        metadata_fd = (
            _open_entry(_METADATA + _PENDING, _READ, dir_fd)
            if _lexists(_METADATA + _PENDING, dir_fd)
            else None
        )
        if metadata_fd is not None:
            pending.append(metadata_fd)
            checksum_fd = _open_entry(_CHECKSUM + _PENDING, _READ, dir_fd)
            if checksum_fd is not None:
                pending.append(checksum_fd)
        uncommitted = _lexists(_DATA + _PENDING, dir_fd)
        if (pending or uncommitted) and _clean_interrupted_replace_at(dir_fd):
            raise _Changed  # they were leftovers, now cleaned: read afresh
        # A replace renamed its new data into place and has not yet (or, after
        # a crash, never) renamed the metadata: the pending one describes
        # 'file'. Without a pending checksum, that was renamed already.
        raw = _read_fd(pending[0]) if pending and not uncommitted else None
        metadata_status = None  # of a committed metadata.json, to cache it
        if raw is not None:  # (None too for a planted directory: ignored)
            where = _METADATA + _PENDING
            raw_checksum = _read_fd(pending[1]) if len(pending) > 1 else None
            if raw_checksum is None:
                raw_checksum = _read_entry(_CHECKSUM, dir_fd)
        else:
            where = _METADATA
            raw, metadata_status = _read_entry_status(_METADATA, dir_fd)
            if raw is None:
                _refuse_planted(file_id, folder, dir_fd)
                raise StoredFileNotFoundError(file_id, folder)
            raw_checksum = _read_entry(_CHECKSUM, dir_fd)
        if raw_checksum is None:  # none (filedepot's files), or not a file
            _refuse_planted(file_id, folder, dir_fd)
        now = _lstat(_DATA, dir_fd)
        if now is None or (now.st_ino, now.st_dev) != (opened.st_ino, opened.st_dev):
            # A replace committed after the data was opened; or a delete removed
            # it, and the next try says so.
            raise _Changed
        info = _parse_metadata(file_id, _join(folder, where), raw)
        info["checksum"] = _parse_checksum(raw_checksum)
        if cache is not None and directory is not None and metadata_status is not None:
            # Checked before it is kept (and raising as StoredFile would):
            # what the cache gives back is not checked again.
            check_metadata(file_id, "LocalStoredFile", **info)
            cache.store(file_id, directory, metadata_status, opened, info)
        return fd, opened, info, False
    except BaseException:
        os.close(fd)
        raise
    finally:
        for pending_fd in pending:
            os.close(pending_fd)


def _parse_metadata(file_id: str, where: str, raw: bytes) -> dict[str, Any]:
    if len(raw) > _MAX_METADATA:
        raise CorruptMetadataError(
            f"Invalid file metadata for {file_id} in {where}: larger than "
            f"{_MAX_METADATA} bytes. Restore the file from a backup or delete it."
        )
    try:
        stored = json.loads(raw)
        last_modified = stored.get("last_modified")
        # Only a missing key, null or "" (what filedepot may have written) takes
        # the default: 0, false or [] are of the wrong type, and StoredFile
        # refuses them as corrupt.
        return {
            "filename": _unless_empty(stored.get("filename"), DEFAULT_FILENAME),
            "content_type": _unless_empty(stored.get("content_type"), DEFAULT_CONTENT_TYPE),
            "content_length": stored.get("content_length"),
            "last_modified": (
                parse_timestamp(last_modified)
                if isinstance(last_modified, str) and last_modified
                else _unless_empty(last_modified, None)
            ),
        }
    except (ValueError, AttributeError, TypeError) as exc:
        raise CorruptMetadataError(
            f"Invalid file metadata for {file_id} in {where}: {exc}. "
            "Restore the file from a backup or delete it."
        ) from exc


def _unless_empty(value: object, default: Any) -> Any:
    return default if value is None or value == "" else value


def _parse_checksum(raw: bytes | None) -> str | None:
    if raw is None:
        return None  # written by filedepot, which records none
    text = raw.decode("ascii", "replace")
    # Empty or torn after a power cut (it is not fsynced): better none than wrong.
    return text if is_checksum(text) else None


def _refuse_planted(file_id: str, folder: str, dir_fd: int) -> None:
    """Raise CorruptMetadataError if metadata.json or checksum is a directory.

    depot never makes one there, and none can be renamed over: a replace
    would commit its data and then fail to commit the metadata. (A link is
    read as missing and renamed over, like any other file.)
    """
    for name in (_METADATA, _CHECKSUM):
        found = _lstat(name, dir_fd)
        if found is not None and stat.S_ISDIR(found.st_mode):
            raise CorruptMetadataError(
                f"Invalid file metadata for {file_id} in {_join(folder, name)}: a directory, "
                "not a file. Remove that directory and restore the file from a backup, "
                "or delete the file."
            )


# --- one directory entry, never through a link ---------------------------------


def _open_entry(name: str, flags: int, dir_fd: int | None = None) -> int | None:
    """Open ``name``; None when it is missing, a link, or of the wrong kind."""
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a link
            return None
        raise


def _read_entry(name: str, dir_fd: int) -> bytes | None:
    """The bytes of a small regular file; None when it is not one."""
    fd = _open_entry(name, _READ, dir_fd)
    if fd is None:
        return None
    try:
        return _read_fd(fd)
    finally:
        os.close(fd)


def _read_entry_status(name: str, dir_fd: int) -> tuple[bytes | None, os.stat_result | None]:
    """As :func:`_read_entry`, with the status of what was read, if it is a regular file."""
    fd = _open_entry(name, _READ, dir_fd)
    if fd is None:
        return None, None
    try:
        found = os.fstat(fd)
        return _read_fd(fd), found if stat.S_ISREG(found.st_mode) else None
    finally:
        os.close(fd)


def _read_fd(fd: int) -> bytes | None:
    try:
        parts = [os.read(fd, 65536)]
        # Metadata this large is rare: read on, but not without end (a planted
        # giant file is refused once past the limit).
        while len(parts[-1]) == 65536 and len(parts) * 65536 <= _MAX_METADATA:
            parts.append(os.read(fd, 65536))
    except (IsADirectoryError, BlockingIOError):  # a planted directory or FIFO
        return None
    return b"".join(parts)


def _lstat(name: str, dir_fd: int | None) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _lexists(name: str, dir_fd: int) -> bool:
    return os.access(name, os.F_OK, dir_fd=dir_fd, follow_symlinks=False)


def _is_file(name: str, dir_fd: int) -> bool:
    found = _lstat(name, dir_fd)
    return found is not None and stat.S_ISREG(found.st_mode)


def _is_directory(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _rename(source: str, target: str, dir_fd: int) -> None:
    os.replace(source, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def _remove(name: str, dir_fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(name, dir_fd=dir_fd)


def _write_file(
    name: str, dir_fd: int, chunks: Iterable[bytes | bytearray | memoryview], fsync: bool
) -> None:
    fd = os.open(name, _CREATE, 0o666, dir_fd=dir_fd)
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


# --- leftovers of crashes -------------------------------------------------------


def _has_pending(folder: str) -> bool:
    # checksum.new is written after file.new, removed before it, and renamed
    # before metadata.json.new, so a replace never leaves it alone; but one
    # planted there is a leftover too.
    return any(
        os.path.lexists(_join(folder, name + _PENDING)) for name in (_DATA, _METADATA, _CHECKSUM)
    )


def _finish_interrupted_replace(dir_fd: int) -> None:
    """Complete a committed replace (rename the pending metadata) or drop an uncommitted one.

    Only with the directory's lock held, so that no replace is running.
    """
    if _lexists(_DATA + _PENDING, dir_fd):
        _discard_pending(dir_fd)
        return
    for name in (_CHECKSUM, _METADATA):  # metadata last: it marks the replace as unfinished
        if _is_file(name + _PENDING, dir_fd):
            _rename(name + _PENDING, name, dir_fd)
        else:  # missing, or planted (a link is removed, never renamed into place)
            _clear(name + _PENDING, dir_fd)


def _discard_pending(dir_fd: int) -> None:
    # metadata.json.new goes first and file.new last, so that no moment shows
    # the pending metadata without file.new, which would read as committed.
    for name in (_METADATA, _CHECKSUM, _DATA):
        _clear(name + _PENDING, dir_fd)


def _clear(name: str, dir_fd: int) -> None:
    """Remove whatever is at ``name`` (a planted directory too), never following a link.

    A directory at a pending name would make every replace fail to write
    there, for good. It is renamed at once into the storage's trash (``..`` is
    the storage's root, never a link), then removed; what cannot be is left to
    list(), which removes trash nobody holds the lock of.
    """
    found = _lstat(name, dir_fd)
    if found is None:
        return
    if not stat.S_ISDIR(found.st_mode):
        _remove(name, dir_fd)
        return
    trash = os.pardir + os.sep + _TRASH_PREFIX + new_file_id()
    os.rename(name, trash, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    with contextlib.suppress(OSError):
        _remove_tree(trash, dir_fd, _MAX_PLANTED_DEPTH)


#: How deep a planted directory is removed at once; deeper ones are left to list().
_MAX_PLANTED_DEPTH = 16


def _remove_tree(name: str, dir_fd: int, depth: int) -> None:
    fd = _open_entry(name, _DIRECTORY, dir_fd)
    if fd is None:  # not a directory (O_NOFOLLOW: a link neither)
        _remove(name, dir_fd)
        return
    try:
        for entry in os.listdir(fd):
            found = _lstat(entry, fd)
            if found is not None and stat.S_ISDIR(found.st_mode) and depth > 0:
                _remove_tree(entry, fd, depth - 1)
            else:
                _remove(entry, fd)  # a directory too deep raises: left to list()
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def _clean_interrupted_replace(folder: str) -> None:
    dir_fd = _open_entry(folder, _DIRECTORY)
    if dir_fd is not None:
        try:
            _clean_interrupted_replace_at(dir_fd)
        finally:
            os.close(dir_fd)


def _clean_interrupted_replace_at(dir_fd: int) -> bool:
    """Finish or undo a killed replace, unless one is running; whether it was done.

    A running replace holds the directory's lock for as long as it has pending
    files, so getting the lock without waiting proves those are leftovers.
    Without write access (a read-only reader) nothing is cleaned and readers
    read around the leftovers. No fsync: were the cleaning lost in a power cut,
    the leftovers would read as before and be cleaned again.
    """
    if fcntl is None:
        return False
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    try:
        _finish_interrupted_replace(dir_fd)
    except OSError:
        return False
    finally:
        fcntl.flock(dir_fd, fcntl.LOCK_UN)
    return True


def _remove_abandoned(temp: str, fileid: str) -> None:
    """Remove the temporary directory of a killed write of ``fileid``, unless one is running.

    As in :func:`_remove_leftover`: a running write holds the directory's lock
    from before it writes a byte, so an unlocked directory with files in it was
    left by a killed one. An empty one may be a write that has just made it
    and not locked it yet (microseconds, between mkdir and flock): it goes
    once it is :data:`_JUST_MADE` seconds old, and until then this write is
    refused. Without flock, only what is stale goes.
    """
    if os.path.islink(temp):
        os.unlink(temp)  # never ours: depot makes only directories
        return
    running = FileExistsError(
        f"File {fileid} is being written by another process or thread ({temp}); write "
        "it once that write has finished."
    )
    dir_fd = _open_entry(temp, _DIRECTORY)
    if dir_fd is not None:
        try:
            age = time.time() - os.fstat(dir_fd).st_mtime
            stale = age > _STALE_AFTER
            if fcntl is not None:
                try:
                    fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise running from None
                if age < _JUST_MADE and not os.listdir(dir_fd):
                    raise running
            elif not stale:
                raise running
        finally:
            os.close(dir_fd)
    shutil.rmtree(temp, ignore_errors=True)


def _remove_leftover(entry: os.DirEntry[str]) -> None:
    """Remove what a killed create() or delete() left; a link at once, never followed.

    A running create() or delete() holds its directory's lock, so a directory
    whose lock is free was left by a killed one, and goes at once. Except an
    empty temporary directory: a create() may have just made it and not yet
    locked it, so it goes only once stale (as everything does without flock).
    """
    try:
        if entry.is_symlink():
            os.unlink(entry.path)  # never ours: depot makes only directories
            return
        stale = time.time() - entry.stat(follow_symlinks=False).st_mtime > _STALE_AFTER
        if not entry.is_dir(follow_symlinks=False):
            if stale:
                os.unlink(entry.path)
            return
        dir_fd = _open_entry(entry.path, _DIRECTORY)
        if dir_fd is None:
            return
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return  # being written or deleted right now
            elif not stale:
                return
            if stale or entry.name.startswith(_TRASH_PREFIX) or os.listdir(dir_fd):
                shutil.rmtree(entry.path, ignore_errors=True)
        finally:
            os.close(dir_fd)
    except FileNotFoundError:
        pass


class _locked:
    """Hold an exclusive lock on a file's directory: one replace or delete at a time.

    Yields the directory's descriptor: everything done under the lock goes
    through it, so that nothing is redirected by a link planted meanwhile.
    """

    def __init__(self, folder: str, fileid: str) -> None:
        self._folder = folder
        self._fileid = fileid
        self._fd = -1

    def __enter__(self) -> int:
        fd = _open_entry(self._folder, _DIRECTORY)
        if fd is None:
            raise StoredFileNotFoundError(self._fileid, self._folder)
        self._fd = fd
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        # A delete() may have renamed the directory away while we waited.
        try:
            same = os.path.samestat(os.fstat(fd), os.lstat(self._folder))
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            raise StoredFileNotFoundError(self._fileid, self._folder)
        return fd

    def __exit__(self, *exc_info: object) -> None:
        os.close(self._fd)  # closing releases the lock
