"""``depot ls``, ``info``, ``put``, ``get`` and ``rm``: one file at a time."""

from __future__ import annotations

import errno
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

import click

from depot.cli import exits
from depot.cli.group import State, cli, with_output
from depot.cli.output import StdoutClosed
from depot.exceptions import DepotError, StoredFileNotFoundError
from depot.io.interfaces import StoredFile
from depot.manager import DepotManager

__all__ = ["get_command", "info_command", "ls_command", "put_command", "rm_command"]


def _facts(name: str, stored: StoredFile) -> dict[str, Any]:
    return {
        "path": f"{name}/{stored.file_id}",
        "file_id": stored.file_id,
        "filename": stored.filename,
        "content_type": stored.content_type,
        "content_length": stored.content_length,
        "last_modified": stored.last_modified,
        "checksum": stored.checksum,
        "public_url": stored.public_url,
    }


@cli.command("ls")
@click.argument("depot", required=False)
@click.option("--long", "-l", "long_", is_flag=True, help="Size, date, type and name too.")
@with_output
def ls_command(state: State, depot: str | None, long_: bool) -> int:
    """List the files of DEPOT, or with no DEPOT the configured depots.

    \b
    Examples:
      depot ls                 the depots, their backends, the default
      depot ls media -l        each file of media with its size, date, type, name
    """
    if depot is None:
        state.depots()
        default = DepotManager.get_default()
        rows = [
            {
                "name": n,
                "backend": f"{type(s).__module__}.{type(s).__name__}",
                "default": n == default,
            }
            for n, s in DepotManager._depots.items()
        ]
        if state.output.json:
            state.output.data(rows)
        else:
            state.output.table(
                ["depot", "backend", "default"],
                [(r["name"], r["backend"], "yes" if r["default"] else "") for r in rows],
            )
        return exits.OK
    name, storage = state.storage(depot)
    ids = sorted(storage.list())
    if not long_:
        if state.output.json:
            state.output.data(ids)
        else:
            for file_id in ids:
                state.output.line(file_id)
        return exits.OK
    listed, status = [], exits.OK
    for file_id in ids:
        try:
            with storage.get(file_id) as stored:
                listed.append(_facts(name, stored))
        except StoredFileNotFoundError:
            continue  # deleted since it was listed
        except DepotError as exc:  # one damaged file must not hide the others
            state.output.warn(f"{name}/{file_id}: cannot be read: {exc}")
            status = exits.FAILED
    if state.output.json:
        state.output.data(listed)
    else:
        state.output.table(
            ["id", "size", "modified", "type", "name"],
            [
                (
                    f["file_id"],
                    f["content_length"],
                    f["last_modified"] and f["last_modified"].strftime("%Y-%m-%d %H:%M:%S"),
                    f["content_type"],
                    f["filename"],
                )
                for f in listed
            ],
        )
    return status


@cli.command("info")
@click.argument("path")
@with_output
def info_command(state: State, path: str) -> int:
    """Show what DEPOT/ID records: name, type, size, date, checksum, URL.

    \b
    Example:
      depot info media/6f1c33e0-4b45-11ef-9d8e-0242ac120002
    """
    name, storage, file_id = state.file(path)
    with storage.get(file_id) as stored:
        facts = _facts(name, stored)
    if state.output.json:
        state.output.data(facts)
    else:
        state.output.table(["field", "value"], [(k, v) for k, v in facts.items()])
    return exits.OK


# -- put, get, rm -----------------------------------------------------------


@cli.command("put")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--depot", "-d", "depot", metavar="NAME", help="The depot (default: the default).")
@click.option("--name", metavar="NAME", help="The stored file name (default: FILE's).")
@click.option("--type", "content_type", metavar="TYPE", help="The content type (default: guessed).")
@with_output
def put_command(
    state: State,
    files: tuple[str, ...],
    depot: str | None,
    name: str | None,
    content_type: str | None,
) -> int:
    """Store each FILE ('-' reads standard input) and print its DEPOT/ID path.

    \b
    Examples:
      depot put -d media report.pdf photo.jpg
      pg_dump app | depot put -d backups --name app.sql -
    """
    depot_name, storage = state.storage(depot)
    if name is not None and len(files) > 1:
        raise click.UsageError("--name names one file; give one FILE with it.")
    if files.count("-") > 1:
        raise click.UsageError("'-' (standard input) can be given once.")
    # Every FILE is checked first: a mistake in the last one stores nothing, rather than
    # files whose ids the error would keep from being printed.
    for path in files:
        if path != "-":
            _check_readable(path)
    stored = []
    try:
        for path in files:
            filename = name if name is not None else (None if path == "-" else Path(path).name)
            if path == "-":
                file_id = storage.create(sys.stdin.buffer, filename, content_type)
            else:
                with _open(path) as handle:
                    file_id = storage.create(handle, filename, content_type)
            stored.append({"file": path, "path": f"{depot_name}/{file_id}", "file_id": file_id})
            if not state.output.json:
                state.output.line(f"{depot_name}/{file_id}")
    finally:
        # Those stored before a failure are reported all the same, so none is left unknown.
        if state.output.json and stored:
            state.output.data(stored)
    return exits.OK


def _check_readable(path: str) -> None:
    # Not by opening it: a named pipe opened and closed would lose its writer.
    try:
        if os.path.isdir(path):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        os.stat(path)
        if not os.access(path, os.R_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {path!r}: {exc.strerror}", param_hint="FILE"
        ) from None


def _open(path: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {path!r}: {exc.strerror}", param_hint="FILE"
        ) from None


@cli.command("get")
@click.argument("path")
@click.option("--output", "-o", metavar="FILE", help="Write to FILE ('-': standard output).")
@click.pass_context
def get_command(ctx: click.Context, path: str, output: str | None) -> int:
    """Write the bytes of DEPOT/ID to standard output, or to FILE.

    \b
    Examples:
      depot get media/6f1c33e0-4b45-11ef-9d8e-0242ac120002 -o photo.jpg
      depot get backups/2c9d... | psql app
    """
    state = ctx.find_object(State)
    assert state is not None
    _, storage, file_id = state.file(path)
    target = None if output in (None, "-") else _target(output)
    with storage.get(file_id) as stored:
        if target is None:
            if output is None and sys.stdout.isatty():
                raise click.UsageError(
                    "standard output is a terminal; give -o FILE, -o - or redirect it."
                )
            try:
                _copy_out(stored, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            except BrokenPipeError:
                raise StdoutClosed from None
            return exits.OK
        _write_file(stored, target, output)  # type: ignore[arg-type]
    return exits.OK


def _target(output: str) -> Path:
    """The FILE of ``-o``, refused if it would overwrite a file of a local depot."""
    target = Path(output)
    # 'newdir/' names a directory even when there is none: Path() would drop the slash.
    if target.is_dir() or output.endswith(("/", os.sep)):
        raise click.ClickException(
            f"cannot write {output!r}: it names a directory; give the path of a file."
        )
    # FILE itself is replaced, never followed (a symlink at FILE is replaced by the file).
    resolved = target.parent.resolve() / target.name
    for name, storage in DepotManager._depots.items():
        root = getattr(storage, "storage_path", None)
        if isinstance(root, (str, os.PathLike)) and resolved.is_relative_to(Path(root).resolve()):
            raise click.BadParameter(
                f"{output!r} is inside the storage of depot {name!r}; writing there would "
                "change a stored file behind the depot's back. Give a path outside it.",
                param_hint="-o",
            )
    return target


def _write_file(stored: StoredFile, target: Path, output: str) -> None:
    # A name of its own (O_EXCL, never a planted symlink, never another get's), renamed
    # over FILE when complete: FILE is never half written.
    try:
        # FILE's name cut short (in bytes): the temporary name must fit in NAME_MAX too.
        short = os.fsdecode(os.fsencode(target.name)[:200])
        fd, partial = tempfile.mkstemp(
            prefix=f".{short}.", suffix=".depot-partial", dir=target.parent
        )
    except OSError as exc:
        raise click.ClickException(f"cannot write {output!r}: {exc.strerror}.") from None
    try:
        # mkstemp makes the file private (0600); FILE gets the mode open() would give it.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with open(fd, "wb") as handle:
            _copy_out(stored, handle)
        try:
            os.replace(partial, target)
        except OSError as exc:
            raise click.ClickException(f"cannot write {output!r}: {exc.strerror}.") from None
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def _copy_out(stored: StoredFile, handle: BinaryIO) -> None:
    shutil.copyfileobj(stored, handle, 1024 * 1024)


@cli.command("rm")
@click.argument("paths", nargs=-1, required=True, metavar="DEPOT/ID...")
@click.option("--missing-ok", is_flag=True, help="A file that is not there is no error.")
@with_output
def rm_command(state: State, paths: tuple[str, ...], missing_ok: bool) -> int:
    """Delete files. Rows that refer to them will point at nothing: run
    'depot gc' to find the files nothing refers to instead.

    \b
    Example:
      depot rm media/6f1c33e0-4b45-11ef-9d8e-0242ac120002
    """
    results = []
    status = exits.OK
    # Every path is checked first: a typo in the last one deletes nothing.
    files = [(path, *state.file(path)[1:]) for path in paths]
    for path, storage, file_id in files:
        if not storage.exists(file_id):
            results.append({"path": path, "outcome": "missing"})
            if not missing_ok:
                state.output.error(f"{path}: no such file")
                status = exits.NOT_FOUND
            continue
        storage.delete(file_id)
        results.append({"path": path, "outcome": "deleted"})
    if state.output.json:
        state.output.data(results)
    return status
