"""Progress reporting for long loops (crafting, training): rich bars, or silence for ``--json``."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class Task:
    """One bar; ``update(advance=1, status=...)`` moves it and shows live numbers.

    Without a terminal (logs, CI, ``nohup``) a bar would only appear at the end, so each
    update is printed as a plain line instead.
    """

    def __init__(self, progress: Progress | None, task_id=None, console: Console | None = None, description: str = "", total=None,
                 transient: bool = False):
        self._progress, self._id, self._transient = progress, task_id, transient
        self._console, self._description, self._total, self._done = console, description, total, 0

    def update(self, advance: float = 1, total: float | None = None, **status: Any) -> None:
        text = "  ".join(f"{k}={_fmt(v)}" for k, v in status.items())
        if self._console is not None:
            self._done += advance
            self._total = total if total is not None else self._total
            self._console.print(f"{self._description} {self._done:g}/{self._total or '?'}  {text}", highlight=False)
            return
        if self._progress is None:
            return
        kwargs = {"status": text} if status else {}
        if total is not None:
            kwargs["total"] = total
        self._progress.update(self._id, advance=advance, **kwargs)

    def close(self) -> None:
        if self._progress is None:
            return
        if self._transient:
            self._progress.remove_task(self._id)
        else:
            self._progress.stop_task(self._id)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Reporter:
    """Creates bars on a shared rich console; ``Reporter(quiet=True)`` draws nothing."""

    def __init__(self, quiet: bool = False, console: Console | None = None):
        self.quiet = quiet
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None

    def __enter__(self) -> Reporter:
        if not self.quiet and self.console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"),
                console=self.console,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def task(self, description: str, total: float | None, transient: bool = False) -> Task:
        """A bar.  ``transient``: a short-lived inner bar (one crafting pass among many), removed
        when closed and not printed at all without a terminal, where its parent's lines suffice."""
        if self.quiet or (transient and self._progress is None):
            return Task(None)
        if self._progress is None:  # no terminal: plain lines
            return Task(None, console=self.console, description=description, total=total)
        return Task(self._progress, self._progress.add_task(description, total=total, status=""), transient=transient)

    def log(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message)


NULL_REPORTER = Reporter(quiet=True)
