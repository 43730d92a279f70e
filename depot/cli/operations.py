"""``depot copy``, ``migrate``, ``gc`` and ``verify``: the long work of :mod:`depot.ops`,
with progress bars."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import click

from depot._settings import missing_dependency_message
from depot.cli import exits
from depot.cli.group import State, cli, with_output
from depot.cli.loading import import_object, ming_classes, sqlalchemy_models
from depot.cli.output import Output
from depot.cli.progress import Bars
from depot.exceptions import BackendUnavailableError, ConfigurationError

__all__ = ["copy_command", "gc_command", "migrate_command", "verify_command"]
_jobs = click.option(
    "--jobs",
    "-j",
    default=4,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Files handled at once.",
)
_compare = click.option(
    "--compare",
    type=click.Choice(["metadata", "content"]),
    default="metadata",
    show_default=True,
    help="How a file already in the target is found the same: recorded size and "
    "checksum, or also its bytes read back.",
)
_db = click.option("--db", metavar="URL", help="The SQLAlchemy URL of the database of --models.")
_models = click.option(
    "--models",
    "-m",
    metavar="MODULE[:CLASS]",
    multiple=True,
    help="SQLAlchemy models whose file columns refer to files (a module: all of its own).",
)
_ming_session = click.option(
    "--ming-session", metavar="MODULE:NAME", help="The Ming ODMSession of --ming-models."
)
_ming_models = click.option(
    "--ming-models", metavar="MODULE[:CLASS]", multiple=True, help="Ming mapped classes."
)


def _reference_options(command: Any) -> Any:
    """``--db``, ``--models``, ``--ming-session``, ``--ming-models``: where the rows are."""
    return _db(_models(_ming_session(_ming_models(command))))


@dataclass
class _References:
    """The databases and models whose values refer to files."""

    bind: Any = None
    models: list[Any] = field(default_factory=list)
    ming_session: Any = None
    ming_classes: list[Any] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.models or self.ming_classes)

    def batches(self) -> Iterator[Any]:
        from depot.ops import ming_references, sqlalchemy_references

        if self.models:
            yield from sqlalchemy_references(self.bind, self.models)
        if self.ming_classes:
            yield from ming_references(self.ming_session, self.ming_classes)


def _references(
    db: str | None, models: tuple[str, ...], ming_session: str | None, ming: tuple[str, ...]
) -> _References:
    refs = _References()
    if models:
        if db is None:
            raise click.UsageError("--models needs --db URL, the database the rows are in.")
        import sqlalchemy as sa

        refs.models = sqlalchemy_models(list(models))
        try:
            refs.bind = sa.create_engine(db)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
            raise click.BadParameter(str(exc), param_hint="--db") from None
        # Connect now: a server that is down or a database that cannot be opened is
        # "unreachable" (status 5), not an error in the middle of the work.
        try:
            with refs.bind.connect():
                pass
        except sa.exc.DBAPIError as exc:
            where = refs.bind.url.render_as_string(hide_password=True)
            problem = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise BackendUnavailableError(
                f"cannot connect to the database {where}: {problem}; check --db and "
                "that the server is running."
            ) from exc
    elif db is not None:
        raise click.UsageError("--db given without --models: name the models it holds.")
    if ming:
        if ming_session is None:
            raise click.UsageError("--ming-models needs --ming-session MODULE:NAME.")
        refs.ming_session = _bound_ming_session(ming_session)
        refs.ming_classes = ming_classes(list(ming))
    return refs


def _bound_ming_session(spec: str) -> Any:
    try:
        from ming.odm import ODMSession, ThreadLocalODMSession
    except ImportError as exc:
        raise ImportError(missing_dependency_message("depot.fields.ming", "ming")) from exc

    if ":" not in spec:
        raise click.BadParameter(
            f"{spec!r}: write MODULE:NAME, the session's module and name.",
            param_hint="--ming-session",
        )
    session = import_object(spec, "--ming-session")[1]
    if not isinstance(session, (ODMSession, ThreadLocalODMSession)):
        raise ConfigurationError(
            f"--ming-session {spec}: a {type(session).__name__}, not a Ming ODMSession."
        )
    if getattr(getattr(session, "impl", None), "bind", None) is None:
        raise ConfigurationError(
            f"--ming-session {spec}: the session is not bound to a datastore yet; give "
            "--app MODULE:FUNCTION, the setup of your application that binds it."
        )
    return session


def _results(items: list[Any]) -> list[dict[str, Any]]:
    return [
        {"file_id": r.file_id, "outcome": r.outcome, "reason": r.reason, "size": r.size}
        for r in items
    ]


def _copy_report(summary: Any) -> dict[str, Any]:
    return {
        "ok": summary.ok,
        "copied": summary.copied,
        "skipped": summary.skipped,
        "failed": _results(summary.failed),
        "bytes_copied": summary.bytes_copied,
        "last_modified_not_kept": [r.file_id for r in summary.last_modified_not_kept],
    }


def _show_copy(output: Output, report: dict[str, Any]) -> None:
    output.line(
        f"copied {report['copied']} ({report['bytes_copied']} bytes), "
        f"skipped {report['skipped']}, failed {len(report['failed'])}"
    )
    for failed in report["failed"]:
        output.line(f"failed  {failed['file_id']}: {failed['reason']}")
    if report["last_modified_not_kept"]:
        output.warn(
            f"{len(report['last_modified_not_kept'])} copies carry the target's own "
            "modification time (its backend sets it)."
        )


@cli.command("copy")
@click.argument("source")
@click.argument("target")
@_jobs
@_compare
@click.option(
    "--ids",
    "ids_file",
    type=click.File("r"),
    help="Copy only the ids in this file, one a line ('-': stdin).",
)
@click.option(
    "--overwrite-newer",
    is_flag=True,
    help="Replace a target file that differs even when it is newer than the source's.",
)
@with_output
def copy_command(
    state: State,
    source: str,
    target: str,
    jobs: int,
    compare: str,
    ids_file: Any,
    overwrite_newer: bool,
) -> int:
    """Copy every file of SOURCE to TARGET under the same ids, verified.

    A second run copies only what is missing or different, so a copy that was
    stopped is finished by running it again.

    \b
    Example:
      depot copy media media_s3 --jobs 8
    """
    from depot.ops import copy_depot

    source_name, src = state.storage(source)
    _, dst = state.storage(target)
    if src is dst:
        raise click.UsageError(
            f"{source} and {target} are the same depot ({source_name}); give two depots."
        )
    try:
        ids = None if ids_file is None else [line.strip() for line in ids_file if line.strip()]
    except UnicodeDecodeError:
        raise click.BadParameter(
            f"{ids_file.name!r} is not text: give a file of ids, one a line.", param_hint="--ids"
        ) from None
    with Bars(state.output.interactive, state.output.err) as bars:
        summary = copy_depot(
            src,
            dst,
            jobs=jobs,
            progress=bars,
            ids=ids,
            compare=compare,  # type: ignore[arg-type]
            overwrite_newer=overwrite_newer,
        )
    report = _copy_report(summary)
    if state.output.json:
        state.output.data(report)
    else:
        _show_copy(state.output, report)
    return exits.OK if summary.ok else exits.FAILED


@cli.command("migrate")
@click.argument("target")
@_reference_options
@click.option(
    "--source",
    "sources",
    metavar="DEPOT",
    multiple=True,
    help="Move only the files of these depots (default: every depot but TARGET).",
)
@click.option(
    "--rewrite", is_flag=True, help="Make the rows name TARGET once their files are copied."
)
@_jobs
@_compare
@with_output
def migrate_command(
    state: State,
    target: str,
    db: str | None,
    models: tuple[str, ...],
    ming_session: str | None,
    ming_models: tuple[str, ...],
    sources: tuple[str, ...],
    rewrite: bool,
    jobs: int,
    compare: str,
) -> int:
    """Copy the files the rows of --models refer to into TARGET; with --rewrite,
    make those rows name TARGET.

    \b
    Example:
      depot migrate media_s3 --db postgresql://localhost/app -m app.models --rewrite
    """
    from depot.ops import MigrationPlan

    state.depots()
    target_name, _ = state.storage(target)
    for source in sources:
        if state.storage(source)[0] == target_name:
            raise click.UsageError(f"{source!r} is both a source and the target; leave it out.")
    refs = _references(db, models, ming_session, ming_models)
    if not refs:
        raise click.UsageError("give --models (with --db) or --ming-models: the rows to migrate.")
    plan = MigrationPlan(
        target,
        bind=refs.bind,
        models=refs.models,
        ming_session=refs.ming_session,
        ming_classes=refs.ming_classes,
        sources=sources or None,
        rewrite=rewrite,
        jobs=jobs,
        compare=compare,  # type: ignore[arg-type]
    )
    with Bars(state.output.interactive, state.output.err) as bars:
        summary = plan.execute(bars)
    report: dict[str, Any] = {
        "ok": summary.ok,
        "rows": summary.rows,
        "rewritten": summary.rewritten,
        "left": [{"row": row, "reason": reason} for row, reason in summary.left],
        "unreadable": [{"where": u.where, "problem": u.problem} for u in summary.unreadable],
        "copy": _copy_report(summary.copy),
    }
    if state.output.json:
        state.output.data(report)
    else:
        _show_copy(state.output, report["copy"])
        state.output.line(f"rows read {summary.rows}, rewritten {summary.rewritten}")
        for left in report["left"]:
            state.output.line(f"left    {left['row']}: {left['reason']}")
        for unreadable in report["unreadable"]:
            state.output.line(f"unreadable  {unreadable['where']}: {unreadable['problem']}")
    return exits.OK if summary.ok else exits.FAILED


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> timedelta:
    match = _DURATION.match(value)
    if match is None:
        raise click.BadParameter(
            f"{value!r}: give a number with s, m, h, d or w (as 1d, 12h, 30m; seconds if none)."
        )
    try:
        return timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    except OverflowError:
        raise click.BadParameter(f"{value!r} is longer than can be counted.") from None


@cli.command("gc")
@click.argument("depot")
@_reference_options
@click.option("--delete", is_flag=True, help="Delete the garbage (default: list it).")
@click.option(
    "--grace",
    default="1d",
    show_default=True,
    callback=_duration,
    help="Files modified more recently are kept (uploads in flight, rows not committed).",
)
@click.option(
    "--ignore-unreadable",
    is_flag=True,
    help="Delete even though some column values could not be read.",
)
@click.option(
    "--allow-no-references",
    is_flag=True,
    help="Delete even though no row refers to the depot at all (else taken for a wrong --db).",
)
@_jobs
@with_output
def gc_command(
    state: State,
    depot: str,
    db: str | None,
    models: tuple[str, ...],
    ming_session: str | None,
    ming_models: tuple[str, ...],
    delete: bool,
    grace: timedelta,
    ignore_unreadable: bool,
    allow_no_references: bool,
    jobs: int,
) -> int:
    """List (or --delete) the files of DEPOT that no row of --models refers to.

    Name every model that refers to DEPOT's files: a model left out makes its
    files look like garbage. List first, then delete.

    \b
    Examples:
      depot gc media --db sqlite:///app.db -m app.models
      depot gc media --db sqlite:///app.db -m app.models --delete --grace 7d
    """
    from depot.ops import collect_garbage

    name, _ = state.storage(depot)
    refs = _references(db, models, ming_session, ming_models)
    if not refs:
        raise click.UsageError(
            "give --models (with --db) or --ming-models: without the rows that refer to "
            f"{depot}'s files, every file would look like garbage."
        )
    with Bars(state.output.interactive, state.output.err) as bars:
        summary = collect_garbage(
            name,
            refs.batches(),
            delete=delete,
            grace=grace,
            jobs=jobs,
            progress=bars,
            ignore_unreadable=ignore_unreadable,
            allow_no_references=allow_no_references,
        )
    report = {
        "files": summary.files,
        "rows": summary.rows,
        "references": summary.references,
        "garbage": _results(summary.garbage),
        "recent": len(summary.recent),
        "unreadable": [{"where": u.where, "problem": u.problem} for u in summary.unreadable],
        "unconfigured": [{"path": r.path, "where": r.where} for r in summary.unconfigured],
        "refused": summary.refused,
    }
    if state.output.json:
        state.output.data(report)
    else:
        for result in summary.garbage:
            state.output.line(f"{result.outcome:<12}  {name}/{result.file_id}  {result.reason}")
        state.output.line(
            f"{summary.files} files, {summary.rows} rows, {summary.references} references: "
            f"{len(summary.garbage)} garbage, {len(summary.recent)} unreferenced but recent"
        )
    # Warnings go to standard error in both modes: a script reading the JSON
    # still has them in its log.
    for unreadable in summary.unreadable:
        state.output.warn(f"unreadable {unreadable.where}: {unreadable.problem}")
    for ref in summary.unconfigured:
        state.output.warn(
            f"{ref.path} ({ref.where}) names a depot not configured here; its file "
            "of this depot is kept: configure the same depots and aliases as the app"
        )
    if summary.refused:
        state.output.error(summary.refused)
    return exits.FAILED if summary.refused or summary.failed else exits.OK


@cli.command("verify")
@click.argument("depot", required=False)
@_reference_options
@_jobs
@with_output
def verify_command(
    state: State,
    depot: str | None,
    db: str | None,
    models: tuple[str, ...],
    ming_session: str | None,
    ming_models: tuple[str, ...],
    jobs: int,
) -> int:
    """Check that files hold the bytes they recorded: every file of DEPOT, or every
    file the rows of --models refer to (then missing files are found too).

    \b
    Examples:
      depot verify media
      depot verify --db sqlite:///app.db -m app.models
    """
    from depot.ops import verify_depot, verify_references

    refs = _references(db, models, ming_session, ming_models)
    if depot is not None and refs:
        raise click.UsageError("give DEPOT or --models, not both.")
    if depot is None and not refs:
        raise click.UsageError("give DEPOT, or --models (with --db): what to verify.")
    with Bars(state.output.interactive, state.output.err) as bars:
        if depot is not None:
            _, storage = state.storage(depot)
            summary = verify_depot(storage, jobs=jobs, progress=bars)
        else:
            state.depots()
            summary = verify_references(refs.batches(), jobs=jobs, progress=bars)
    report: dict[str, Any] = {
        "ok": summary.ok,
        "unchecked": _results(summary.unchecked),
        "missing": _results(summary.missing),
        "corrupt": _results(summary.corrupt),
        "failed": _results(summary.failed),
        "unreadable": [{"where": u.where, "problem": u.problem} for u in summary.unreadable],
    }
    if state.output.json:
        state.output.data(report)
    else:
        for kind in ("missing", "corrupt", "failed", "unchecked"):
            for result in report[kind]:
                state.output.line(f"{kind:<9}  {result['file_id']}  {result['reason']}")
        for unreadable in report["unreadable"]:
            state.output.line(f"unreadable  {unreadable['where']}: {unreadable['problem']}")
        state.output.line(
            f"ok {summary.ok}, unchecked {len(summary.unchecked)}, missing "
            f"{len(summary.missing)}, corrupt {len(summary.corrupt)}, "
            f"not checked {len(summary.failed)}"
        )
    status = exits.OK
    if summary.failed:
        status |= exits.FAILED  # could not be read: nothing is known of them
    if summary.missing:
        status |= exits.MISSING
    if summary.corrupt:
        status |= exits.CORRUPT
    if summary.unreadable:
        status |= exits.UNREADABLE
    return status
