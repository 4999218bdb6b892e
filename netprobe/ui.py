"""Terminal presentation shared by the commands: progress bar and error display."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

# rich is imported when a console is made: `check` makes none unless it has
# something to show, and the import is 15 ms of its start-up
if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from netprobe.evidence import ProbeResult


class RichProgress:
    """A progress bar on a terminal, shown only for runs longer than a second.

    Short runs stay silent, and so does a run whose stderr is not a terminal
    (cron, CI, a pipe).
    """

    def __init__(self, console: Callable[[], Console], delay_s: float = 1.0) -> None:
        self.console = console  # made only if the run lasts past delay_s
        self.delay_s = delay_s
        self._bar: Progress | None = None
        self._not_a_terminal = False
        self._task = None
        self._total = 0
        self._done = 0
        self._t0 = 0.0

    def start(self, total: int) -> None:
        self._total, self._done, self._t0 = total, 0, time.monotonic()

    def advance(self, result: ProbeResult) -> None:
        self._done += 1
        if self._bar is None and not self._not_a_terminal and self._done < self._total and \
                time.monotonic() - self._t0 >= self.delay_s:
            console = self.console()
            if not console.is_terminal:
                self._not_a_terminal = True
                return
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(TextColumn("probing"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True)
            self._task = self._bar.add_task("probing", total=self._total)
            self._bar.start()
        if self._bar is not None:
            self._bar.update(self._task, completed=self._done)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


# Text from configs and the network reaches these consoles: `:100:` in
# `line100.yaml:100:10` must stay digits, not become an emoji, on every stream.
def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def stdout_console() -> Console:
    from rich.console import Console

    return Console(highlight=False, file=sys.stdout, emoji=False)
