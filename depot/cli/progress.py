"""Progress bars for long commands, drawn from :class:`depot.ops.progress.Progress` events.

A bar per phase (looking, copying, verifying...), with files done, bytes,
rate and ETA, on standard error, and only when it is a terminal: a command
piped into a file or run by cron prints no bars.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.filesize import decimal
from rich.progress import BarColumn, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress
from rich.text import Text

from depot.ops.progress import Progress

__all__ = ["Bars"]

#: What each phase of :mod:`depot.ops` is called on its bar.
PHASES = {
    "copy": "Copying",
    "scan": "Reading rows",
    "age": "Checking ages",
    "delete": "Deleting",
    "verify": "Verifying",
    "rewrite": "Rewriting rows",
}


class _Amount(ProgressColumn):
    """``12/100 files  3.4/10.0 MB``: files, and bytes once any are read."""

    def render(self, task: Task) -> Text:
        files = f"{task.fields['files_done']}"
        if task.fields["files_total"] is not None:
            files += f"/{task.fields['files_total']}"
        text = f"{files} files"
        done, total = task.fields["bytes_done"], task.fields["bytes_total"]
        if done or total:
            text += f"  {decimal(done)}" + (f"/{decimal(total)}" if total else "")
        return Text(text)


class _Rate(ProgressColumn):
    """Bytes a second while bytes move, else files a second, up to the phase's last event
    (a finished phase keeps its rate instead of seeing it decay)."""

    def render(self, task: Task) -> Text:
        elapsed = max(task.fields["updated"] - task.fields["started"], 1e-6)
        if task.fields["bytes_done"]:
            return Text(f"{decimal(int(task.fields['bytes_done'] / elapsed))}/s")
        return Text(f"{task.fields['files_done'] / elapsed:.0f} files/s")


class Bars:
    """A ``progress`` callable for :mod:`depot.ops` that draws bars, if ``enabled``.

    Use it as a context manager around the operation; disabled, it does nothing.
    """

    def __init__(self, enabled: bool, console: Console | None = None) -> None:
        self.enabled = enabled
        self._tasks: dict[str, Any] = {}
        self._bars: RichProgress | None = None
        if enabled:
            self._bars = RichProgress(
                TextColumn("{task.description:<14}"),
                BarColumn(),
                _Amount(),
                _Rate(),
                TimeRemainingColumn(),
                console=console or Console(stderr=True),
            )

    def __enter__(self) -> Bars:
        if self._bars is not None:
            self._bars.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bars is not None:
            self._bars.stop()

    def __call__(self, event: Progress) -> None:
        if self._bars is None:
            return
        # The bar measures files when their number is known (a copy's byte total
        # grows as files are looked up, so it gives no true fraction), and bytes
        # for a single file, whose size is known once it is looked up.
        by_bytes = bool(event.bytes_total) and (event.files_total or 0) <= 1
        total = event.bytes_total if by_bytes else event.files_total
        done = event.bytes_done if by_bytes else event.files_done
        fields: dict[str, Any] = {
            "files_done": event.files_done,
            "files_total": event.files_total,
            "bytes_done": event.bytes_done,
            "bytes_total": event.bytes_total,
            "updated": time.monotonic(),
        }
        task = self._tasks.get(event.phase)
        if task is None:
            label = PHASES.get(event.phase, event.phase.capitalize())
            task = self._bars.add_task(
                label, total=total, completed=done, started=fields["updated"], **fields
            )
            self._tasks[event.phase] = task
        else:
            self._bars.update(task, total=total, completed=done, **fields)
