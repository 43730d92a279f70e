"""How the ``depot`` command writes: words and tables for people, JSON for scripts.

Results go to standard output; messages, warnings and progress bars to
standard error, so ``depot ls media > ids.txt`` holds the ids alone.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["Output"]


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
        # Off a terminal, rich would wrap at 80 columns; a pipe wants whole lines.
        wide = None if sys.stdout.isatty() else 100_000
        self.out = Console(highlight=False, soft_wrap=True, width=wide)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    @property
    def interactive(self) -> bool:
        """Whether progress bars may be drawn: standard error is a terminal, not ``--quiet``."""
        return not self.quiet and self.err.is_terminal

    def data(self, value: Any) -> None:
        """Write ``value`` as one JSON document (dataclasses, datetimes included)."""
        sys.stdout.write(json.dumps(_plain(value), indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def line(self, text: str = "") -> None:
        """Write a line of result for people (never markup: ids and names are shown as is)."""
        self.out.print(escape(text))

    def note(self, text: str) -> None:
        """Tell the user something on standard error, unless ``--quiet``."""
        if not self.quiet:
            self.err.print(escape(text))

    def warn(self, text: str) -> None:
        self.err.print(f"[yellow]warning:[/] {escape(text)}")

    def error(self, text: str) -> None:
        self.err.print(f"[bold red]error:[/] {escape(text)}")

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        table = Table(*headers, box=None, pad_edge=False, header_style="bold")
        for row in rows:
            table.add_row(*(escape("" if cell is None else str(cell)) for cell in row))
        if self.out.is_terminal:
            self.out.print(table)
            return
        # rich pads every cell to its column's width; a script reading the lines
        # should not get trailing blanks.
        with self.out.capture() as captured:
            self.out.print(table)
        sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
