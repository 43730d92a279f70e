"""The ``depot`` command group: its options, the state its commands share, exit statuses.

Each command (in :mod:`depot.cli.files`, :mod:`depot.cli.operations`,
:mod:`depot.cli.serve`) is thin: it reads its options, calls the library
(:class:`~depot.manager.DepotManager`, :mod:`depot.ops`) and writes what came
back; the rules live in the library. Here, every error the library raises
becomes a one-line message and an exit status (:mod:`depot.cli.exits`).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, TypeVar

import click

from depot import __version__
from depot.cli import exits
from depot.cli.config import CONFIG_ENV, SEARCHED, find_config_file, load_config
from depot.cli.loading import run_app
from depot.cli.output import Output, StdoutClosed, shown_lines
from depot.exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    InvalidFileIdError,
    StoredFileNotFoundError,
    UnknownDepotError,
    ValidationError,
)
from depot.io.interfaces import FileStorage
from depot.manager import DepotManager

__all__ = ["State", "cli", "main", "with_output"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class State:
    """What the group's options set up, shared by the commands of one run."""

    config: str | None = None
    apps: tuple[str, ...] = ()
    quiet: bool = False
    traceback: bool = False
    configured: bool = False
    output: Output = field(default_factory=Output)

    def depots(self) -> None:
        """Configure the depots (once): the ``--app`` modules, then the config file and
        environment."""
        if self.configured:
            return
        self.configured = True
        for spec in self.apps:
            run_app(spec)
        config = load_config(find_config_file(self.config))
        config.configure()
        if not DepotManager._depots:
            raise ConfigurationError(
                "no depot is configured: give --config FILE, set "
                f"{CONFIG_ENV}, put {' or '.join(SEARCHED)} in this directory, set "
                "DEPOT_<NAME>__<SETTING> variables, or --app MODULE that configures them."
            )

    def storage(self, name: str | None) -> tuple[str, FileStorage]:
        self.depots()
        resolved = DepotManager.resolve_alias(name or DepotManager.get_default())
        storage = DepotManager.get(resolved)
        if resolved is None or storage is None:
            raise UnknownDepotError(
                f"no depot named {name!r}; the depots are "
                f"{', '.join(DepotManager._depots)} ('depot ls' lists them)."
            )
        return resolved, storage

    def file(self, path: str) -> tuple[str, FileStorage, str]:
        depot_name, file_id = DepotManager._split_path(path)
        name, storage = self.storage(depot_name)
        return name, storage, file_id


def _json_option(command: F) -> F:
    return click.option(
        "--json", "json_output", is_flag=True, help="Write the result as JSON, for scripts."
    )(command)


def with_output(command: F) -> F:
    """Give the command its :class:`Output` (``--json`` and the group's ``--quiet``)."""

    @wraps(command)
    def run(*args: Any, json_output: bool = False, **kwargs: Any) -> Any:
        state = click.get_current_context().find_object(State)
        assert state is not None
        state.output = Output(json_output, state.quiet)
        if not json_output:
            return command(state, *args, **kwargs)
        # The JSON document is all standard output holds: whatever else prints while
        # the command works (a backend, a model's hook) goes to standard error.
        with contextlib.redirect_stdout(sys.stderr):
            return command(state, *args, **kwargs)

    return _json_option(run)  # type: ignore[return-value]


class _Group(click.Group):
    """Turns the library's errors into a message and an exit status, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except StdoutClosed:
            ctx.exit(_stdout_closed())
        except KeyboardInterrupt:
            ctx.ensure_object(State).output.error("interrupted")
            ctx.exit(exits.INTERRUPTED)
        except Exception as exc:  # noqa: BLE001 - every failure gets a message and a status
            # ctx.obj is the state the group's callback made from the options.
            ctx.exit(_report(ctx.ensure_object(State), exc))


#: The exit status of each kind of error the library raises, most specific first;
#: their messages already say what to do. ImportError: a missing extra, named.
_STATUSES: tuple[tuple[type[Exception], int], ...] = (
    (ConfigurationError, exits.CONFIGURATION),
    (ImportError, exits.CONFIGURATION),
    (StoredFileNotFoundError, exits.NOT_FOUND),
    (InvalidFileIdError, exits.USAGE),
    (BackendUnavailableError, exits.UNAVAILABLE),
    (ValidationError, exits.FAILED),
)


def _stdout_closed() -> int:
    # What is still buffered would fail again as Python exits, with a message about it:
    # standard output goes to /dev/null for the rest of the run.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (a test's capture)
        pass
    return exits.BROKEN_PIPE


def _report(state: State, exc: Exception) -> int:
    if state.traceback:
        state.output.err.print(shown_lines(traceback.format_exc()), markup=False)
    for kind, status in _STATUSES:
        if isinstance(exc, kind):
            state.output.error(str(exc))
            return status
    hint = "" if state.traceback else " (run with --traceback to see where)"
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None and isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        # SQLAlchemy's message runs on with the statement and its parameters.
        answer = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
        state.output.error(
            f"the database answered: {answer}; check that --db is your application's "
            f"database and that its tables exist{hint}"
        )
        return exits.FAILED
    state.output.error(f"{type(exc).__name__}: {exc}{hint}")
    return exits.FAILED


EPILOG = """\b
Depots come from --config FILE, else $DEPOT_CONFIG, else depot.toml or
depot.ini in this directory, plus DEPOT_<NAME>__<SETTING> variables:
  [depot:media]                      (INI; TOML: [depot.media])
  depot.backend = local
  depot.storage_path = /srv/media

\b
Exit statuses: 0 done, 1 some files failed, 2 bad command line,
3 bad configuration, 4 file not found, 5 backend unreachable,
verify: 1 not checked + 8 missing + 16 corrupt + 32 unreadable;
130 interrupted, 141 standard output closed (| head).
"""


@click.group(cls=_Group, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "-c",
    metavar="FILE",
    help=f"INI or TOML file of depots (default: ${CONFIG_ENV}, then {', '.join(SEARCHED)}).",
)
@click.option(
    "--app",
    "apps",
    metavar="MODULE[:FUNCTION]",
    multiple=True,
    help="Import this module (and call FUNCTION) first: your app's depot setup.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or notes; results only.")
@click.option("--traceback", is_flag=True, help="Show the traceback of an error.")
@click.version_option(__version__, prog_name="depot")
@click.pass_context
def cli(
    ctx: click.Context, config: str | None, apps: tuple[str, ...], quiet: bool, traceback: bool
) -> None:
    """Store, list, copy, migrate and check the files of depots.

    \b
    Example:
      depot --config depot.ini ls media
    """
    ctx.obj = State(config=config, apps=apps, quiet=quiet, traceback=traceback)


class _ClosedOutput(io.TextIOBase):
    """Standard output when the command was started with it closed (``>&-``): holding
    /dev/null's descriptor, so no file opened later takes descriptor 1, and refusing
    writes as a closed pipe does."""

    def __init__(self) -> None:
        self._fd = os.open(os.devnull, os.O_WRONLY)
        self.buffer = self

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        raise BrokenPipeError(errno.EBADF, "standard output is closed")


def main(argv: list[str] | None = None) -> int:
    """Run the ``depot`` command; return its exit status (the console script exits with it)."""
    if sys.stdout is None:
        sys.stdout = _ClosedOutput()
    if sys.stderr is None:  # messages are lost; the status still tells
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the rest of the process
    try:
        status = cli.main(args=argv, prog_name="depot", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        Output().error("interrupted")
        return exits.INTERRUPTED
    except (StdoutClosed, BrokenPipeError):  # --help or --version into a closed pipe
        return _stdout_closed()
    return status if isinstance(status, int) else exits.OK
