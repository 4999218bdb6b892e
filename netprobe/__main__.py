"""`python -m netprobe` and the `netprobe` command's entry point."""

import os
import signal
import sys


def _stopped_while_starting(signum: int, _frame: object) -> None:
    # Nothing has been measured or opened yet: one line, exit 3, no traceback
    # from whichever import the signal landed in.
    with_name = signal.Signals(signum).name
    try:
        sys.stderr.write(f"netprobe: stopped by {with_name} while starting; nothing was done\n")
        sys.stderr.flush()
    finally:
        os._exit(3)


def main() -> None:
    # Before the heavy imports (typer, rich, pydantic): a signal during them
    # would otherwise print a KeyboardInterrupt traceback or die silently.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stopped_while_starting)
    from netprobe import readahead

    readahead.start(sys.argv)  # a large config's YAML, read on the other CPU meanwhile
    from netprobe.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
