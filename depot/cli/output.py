"""How the ``depot`` command writes: words and tables for people, JSON for scripts.

Results go to standard output; messages, warnings and progress bars to
standard error, so ``depot ls media > ids.txt`` holds the ids alone.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["Output", "StdoutClosed", "shown", "shown_lines"]


#: C0 and C1 control characters and DEL: a stored name holding ESC could
#: otherwise move the cursor or recolour the user's terminal when listed.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
#: What Python makes of a byte that is not UTF-8 in argv, the environment or a file
#: name; written back, it is that raw byte again (\x9b is the C1 CSI).
_SURROGATE = re.compile("[\udc80-\udcff]")
_JSON_RAW = re.compile("[\x7f-\x9f\ud800-\udfff]")


class StdoutClosed(Exception):
    """Standard output was closed before the results were written (``| head -1``)."""


def shown(text: str) -> str:
    """``text`` safe to print on a terminal: control characters and bytes that were not
    UTF-8 as ``\\xNN``, no markup."""
    text = _SURROGATE.sub(_byte, text)
    return escape(_CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", text))


def shown_lines(text: str) -> str:
    """:func:`shown` for text of several lines (a traceback): newlines kept, as is
    printed with ``markup=False``."""
    return "\n".join(
        _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", _SURROGATE.sub(_byte, line))
        for line in text.split("\n")
    )


def _byte(match: re.Match[str]) -> str:
    return f"\\x{ord(match[0]) - 0xDC00:02x}"


class _Console(Console):
    """A console that shows text as written (no ``:emoji:`` codes) and reports a closed
    standard output instead of exiting."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(highlight=False, soft_wrap=True, emoji=False, **kwargs)

    def on_broken_pipe(self) -> None:
        self.quiet = True  # nothing more to write where nobody reads
        raise StdoutClosed


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class Output:
    """Where one run of the command writes; ``json`` switches standard output to JSON."""

    def __init__(self, json_output: bool = False, quiet: bool = False) -> None:
        self.json = json_output
        self.quiet = quiet
        # Standard output as it is now: with --json, the command runs with sys.stdout
        # pointing at standard error, and the document is written here.
        self.stdout = sys.stdout
        # Off a terminal, rich would wrap at 80 columns; a pipe wants whole lines.
        wide = None if sys.stdout.isatty() else 100_000
        self.out: Console = _Console(width=wide)
        self.err: Console = _Console(stderr=True)

    @property
    def interactive(self) -> bool:
        """Whether progress bars may be drawn: standard error is a terminal (not a dumb
        one), not ``--quiet``. rich alone would say yes to FORCE_COLOR, which CI sets for
        colours in its logs, where redrawn bars would pile up."""
        try:
            terminal = self.err.file.isatty()
        except (AttributeError, ValueError):  # no file, or a closed one
            terminal = False
        return not self.quiet and terminal and self.err.is_interactive

    def data(self, value: Any) -> None:
        """Write ``value`` as one JSON document (dataclasses, datetimes included)."""
        text = json.dumps(_plain(value), indent=2, ensure_ascii=False)
        # json escapes C0 controls but writes C1 ones (U+009B is a terminal's CSI) and
        # lone surrogates (bytes that were not UTF-8) as they are; they only occur inside
        # strings, where \\u escapes are valid JSON and read back as the same string.
        text = _JSON_RAW.sub(lambda m: f"\\u{ord(m[0]):04x}", text)
        write(text + "\n", self.stdout)

    def line(self, text: str = "") -> None:
        """Write a line of result for people (never markup: ids and names are shown as is)."""
        self.out.print(shown(text))

    def note(self, text: str) -> None:
        """Tell the user something on standard error, unless ``--quiet``."""
        if not self.quiet:
            self.err.print(shown(text))

    def warn(self, text: str) -> None:
        self.err.print(f"[yellow]warning:[/] {shown(text)}")

    def error(self, text: str) -> None:
        self.err.print(f"[bold red]error:[/] {shown(text)}")

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        table = Table(*headers, box=None, pad_edge=False, header_style="bold")
        for row in rows:
            table.add_row(*(shown("" if cell is None else str(cell)) for cell in row))
        if self.out.is_terminal:
            self.out.print(table)
            return
        # rich pads every cell to its column's width; a script reading the lines
        # should not get trailing blanks.
        with self.out.capture() as captured:
            self.out.print(table)
        write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def write(text: str, stream: TextIO | None = None) -> None:
    """Write ``text`` to standard output now; :class:`StdoutClosed` if nobody reads it."""
    stream = stream or sys.stdout
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        raise StdoutClosed from None
