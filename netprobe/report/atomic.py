"""Write several files so that each one is either the old or the new content.

Each file is written to a temp file in its own directory, fsynced, then put in
place with `os.replace` (atomic on POSIX within one file system), and the
directory is fsynced so the rename survives a power cut. All temp files are
written before any is renamed: a failure while writing (disk full) leaves
every target untouched.

Temp files are named `.NAME.PID.RANDOM.netprobe-tmp`: hidden, recognisable,
and tied to the process writing them. A run killed part-way leaves its temp
file behind; the next write to the same target removes temp files whose
process is gone (never a live writer's).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from netprobe.errors import NetprobeError

TMP_SUFFIX = ".netprobe-tmp"


class OutputError(NetprobeError):
    """An output file cannot be written; says which and why, before writing any."""


@dataclass(frozen=True)
class PendingWrite:
    path: Path
    content: str


def temp_name(target: Path, pid: int | None = None) -> Path:
    pid = os.getpid() if pid is None else pid
    return target.with_name(f".{target.name}.{pid}.{secrets.token_hex(4)}{TMP_SUFFIX}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def stale_temp_files(target: Path) -> list[Path]:
    """Temp files for `target` left by processes that no longer run."""
    prefix = f".{target.name}."
    stale = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return []
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(TMP_SUFFIX)):
            continue
        middle = name[len(prefix):-len(TMP_SUFFIX)]
        pid_text, _, _token = middle.partition(".")
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
            stale.append(Path(entry.path))
    return stale


def check_writable(paths: Sequence[Path]) -> None:
    """Raise OutputError naming every target that cannot be written."""
    problems = writability_problems(paths)
    if problems:
        raise OutputError(nothing_written(problems, paths))


def nothing_written(problems: Sequence[str], targets: Sequence[Path] = ()) -> str:
    """The message for a set of outputs none of which was written: each file
    that failed and why, then each one held back with it."""
    failed = {p.split(": ", 1)[0] for p in problems}
    held = [f"{t}: not written (the outputs of a run are written together or not at all)"
            for t in targets if str(t) not in failed]
    noun = "output" if len(problems) == 1 else "outputs"
    return (f"cannot write {len(problems)} {noun}, nothing written:\n"
            + "\n".join([*problems, *held]))


def write_error(exc: OSError) -> str:
    """Why a write failed, in words a person acts on: a full disk says so."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on device" if exc.errno == errno.ENOSPC else "disk quota exceeded"
    return f"cannot write ({exc.strerror or exc})"


def writability_problems(paths: Sequence[Path]) -> list[str]:
    """One message per target that cannot be written (missing or read-only
    directory, a directory in the way, the same file named twice)."""
    problems = []
    seen: dict[Path, Path] = {}
    for path in paths:
        resolved = path.resolve()
        if resolved in seen:
            problems.append(f"{path}: named twice (also as {seen[resolved]})")
            continue
        seen[resolved] = path
        parent = resolved.parent
        if not parent.exists():
            problems.append(f"{path}: directory {parent} does not exist")
        elif not parent.is_dir():
            problems.append(f"{path}: {parent} is not a directory")
        elif not os.access(parent, os.W_OK | os.X_OK):
            problems.append(f"{path}: directory {parent} is not writable")
        elif resolved.is_dir():
            problems.append(f"{path}: is a directory")
        elif resolved.exists() and not resolved.is_file():
            problems.append(f"{path}: exists and is not a regular file")
        elif resolved.exists() and not os.access(resolved, os.W_OK):
            # os.replace would succeed in a writable directory, but a read-only
            # file says its owner does not want it overwritten.
            problems.append(f"{path}: file is read-only")
    return problems


def _write_temp(write: PendingWrite) -> Path:
    tmp = temp_name(write.path)
    # 0o666 & ~umask, like any new file; an existing target keeps its mode below.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(write.content)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileNotFoundError):
            mode = stat.S_IMODE(os.stat(write.path).st_mode)
            os.chmod(tmp, mode)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return  # some file systems do not allow opening a directory; the rename is done
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(writes: Sequence[PendingWrite]) -> list[Path]:
    """Write every file or, if any temp file cannot be written, none of them."""
    targets = [w.path for w in writes]
    check_writable(targets)
    # Through symlinks: a link to the real file stays a link, and the file it
    # points to gets the new content.
    writes = [PendingWrite(w.path.resolve(), w.content) for w in writes]
    for w in writes:
        for stale in stale_temp_files(w.path):
            with contextlib.suppress(OSError):
                stale.unlink()
    temps: list[Path] = []
    try:
        for w in writes:
            temps.append(_write_temp(w))
    except OSError as exc:
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        failed = targets[len(temps)]
        raise OutputError(nothing_written([f"{failed}: {write_error(exc)}"], targets)) from None
    except BaseException:
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    replaced = 0
    try:
        for tmp, w in zip(temps, writes, strict=True):
            os.replace(tmp, w.path)
            replaced += 1
    finally:
        for tmp in temps[replaced:]:  # interrupted between renames: leave no strays
            with contextlib.suppress(OSError):
                tmp.unlink()
    for directory in {w.path.parent for w in writes}:
        _fsync_dir(directory)
    return targets
