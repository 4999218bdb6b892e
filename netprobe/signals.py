"""What SIGINT, SIGTERM and SIGHUP do to a run.

A cron `timeout`, systemd stopping the unit and a dropped ssh session all end
a run with a signal; what was measured until then must not be lost. So the
three signals are handled alike, in three stages:

- before probing begins: the command stops with one line and exit 3
  (`Interrupted` is raised where the program is; the CLI prints it);
- while probing: the run stops early and keeps what was measured;
- after probing (diagnosis, rendering, writing): the signal is noted and the
  report is finished, marked interrupted. A second Ctrl-C (a person insisting)
  stops at once; SIGTERM and SIGHUP never do, because a hang-up is often
  delivered twice (by the terminal and again by the shell).

Python-level handlers, not asyncio's `add_signal_handler`: removing those
restores the default action (death) for a moment, and one handler that lives
for the whole command has no such gap.
"""

from __future__ import annotations

import contextlib
import signal
import typing
from collections.abc import Callable, Iterator

if typing.TYPE_CHECKING:  # a type only: validate and --help do not import asyncio (10 ms)
    import asyncio

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    """A signal ended the command before there was anything to report.

    A BaseException, like KeyboardInterrupt, so `except Exception` on the way
    does not swallow it."""

    def __init__(self, signame: str) -> None:
        super().__init__(signame)
        self.signame = signame


class SignalGuard:
    """The one handler of the stop signals for a command's lifetime."""

    def __init__(self) -> None:
        self.received: str | None = None  # the first signal once probing began
        self.deferring = False
        self._stop: Callable[[], None] | None = None
        self._notify: Callable[[str], None] | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> SignalGuard:
        for sig in STOP_SIGNALS:
            with contextlib.suppress(ValueError, OSError):  # not the main thread
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        """Put back what was there (a command run inside pytest leaves no trace)."""
        for sig, previous in self._previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, previous)  # type: ignore[arg-type]
        self._previous.clear()

    def defer(self, notify: Callable[[str], None] | None = None) -> None:
        """From now on a signal is noted (and `notify`d), not raised: probing began."""
        self.deferring = True
        self._notify = notify

    def attach(self, stop: Callable[[], None]) -> None:
        """`stop` ends the probing; called at once if a signal came first."""
        self._stop = stop
        if self.received is not None:
            stop()

    def detach(self) -> None:
        self._stop = None

    def _handle(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if not self.deferring:
            raise Interrupted(name)
        if self.received is not None:
            if signum == signal.SIGINT and self.received == "SIGINT":
                raise Interrupted(name)  # Ctrl-C twice: the person wants out now
            return
        self.received = name
        if self._notify is not None:
            with contextlib.suppress(OSError, ValueError):  # a hung-up terminal
                self._notify(name)
        if self._stop is not None:
            self._stop()


_guard: SignalGuard | None = None


def guard() -> SignalGuard:
    """The running command's guard (a fresh, uninstalled one outside a command)."""
    return _guard if _guard is not None else SignalGuard()


@contextlib.contextmanager
def command_guard() -> Iterator[SignalGuard]:
    """Handle the stop signals for one command, then put the old handlers back."""
    global _guard
    outer, _guard = _guard, SignalGuard().install()
    try:
        yield _guard
    finally:
        _guard.uninstall()
        _guard = outer


@contextlib.contextmanager
def loop_stops_on_signals(loop: asyncio.AbstractEventLoop,
                          stop: Callable[[], None]) -> Iterator[None]:
    """For a loop that runs until stopped (watch, serve): every stop signal
    calls `stop`; afterwards the command's own handlers are back, not the
    default action that asyncio's removal would leave."""
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop)
    try:
        yield
    finally:
        for sig in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, TypeError):
                loop.remove_signal_handler(sig)
                if previous[sig] is not None:
                    signal.signal(sig, previous[sig])  # type: ignore[arg-type]
