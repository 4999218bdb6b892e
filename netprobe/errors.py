"""The project's own errors. The CLI turns each into a message and exit 3."""

from __future__ import annotations


class NetprobeError(Exception):
    """Bad input or a missing precondition: a clear message, exit 3, no traceback."""

    exit_code = 3


class ConfigError(NetprobeError):
    """The config could not be loaded; `problems` holds the problems shown
    (every one, up to a cap), `total` how many were found."""

    def __init__(self, path: str, problems: list[str], total: int | None = None) -> None:
        self.path = path
        self.problems = problems
        self.total = len(problems) if total is None else total
        noun = "problem" if self.total == 1 else "problems"
        more = self.total - len(problems)
        tail = [f"... and {more} more {'problem' if more == 1 else 'problems'} not shown; "
                "fix these and run again"] if more > 0 else []
        super().__init__(f"{path}: {self.total} {noun}:\n" + "\n".join([*problems, *tail]))


class PrivilegeError(NetprobeError):
    """A command needs a privilege it does not have (the lab needs root)."""
