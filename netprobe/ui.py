"""Terminal presentation shared by the commands: progress bar and error display."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from netprobe.evidence import ProbeResult


class RichProgress:
    """A progress bar on a terminal, shown only for runs longer than a second.

    Short runs stay silent, and so does a run whose stderr is not a terminal
    (cron, CI, a pipe).
    """

    def __init__(self, console: Console, delay_s: float = 1.0) -> None:
        self.console = console
        self.delay_s = delay_s
        self._bar: Progress | None = None
        self._task = None
        self._total = 0
        self._done = 0
        self._t0 = 0.0

    def start(self, total: int) -> None:
        self._total, self._done, self._t0 = total, 0, time.monotonic()

    def advance(self, result: ProbeResult) -> None:
        self._done += 1
        if self._bar is None and self.console.is_terminal and \
                time.monotonic() - self._t0 >= self.delay_s and self._done < self._total:
            self._bar = Progress(TextColumn("probing"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=self.console, transient=True)
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
    return Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def stdout_console() -> Console:
    return Console(highlight=False, file=sys.stdout, emoji=False)
