"""The project's own errors. The CLI turns each into a message and exit 3."""

from __future__ import annotations


class NetprobeError(Exception):
    """Bad input or a missing precondition: a clear message, exit 3, no traceback."""

    exit_code = 3


class ConfigError(NetprobeError):
    """The config could not be loaded; `problems` holds every problem found."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{path}: {len(problems)} {noun}:\n" + "\n".join(problems))


class PrivilegeError(NetprobeError):
    """A command needs a privilege it does not have (the lab needs root)."""
