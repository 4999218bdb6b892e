"""Configs already read, kept so that the next run of an unchanged one skips YAML.

A cron job or a CI step checks the same config again and again, and at 10,000
endpoints reading its YAML is most of the load (0.08 s of 0.1 s; PyYAML's
import is 9 ms more). Once a config has passed every check, the plain data the
reader made of its text is kept, under the SHA-256 of that text; a later run
given the same text takes the data from here and validates it as before (the
schema and the cross-checks still run: only the YAML reading and the checks
on the raw text are skipped, and their answers depend on the text alone).

Where: $NETPROBE_CACHE_DIR, else $XDG_CACHE_HOME/netprobe, else
~/.cache/netprobe; NETPROBE_CACHE_DIR set and empty turns it off. An entry
decides what gets probed, so one is used only from a directory that is ours
alone: owned by this user, writable by nobody else (as ssh treats its keys).
Entries are `marshal`ed (no import, exact for every plain YAML value); the
directory's trust is what makes reading them safe. At most MAX_ENTRIES are
kept, the least recently used go first. Any trouble (no home, a full disk, a
damaged entry) only means the config is read from its text again.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import stat
from typing import Any

MAX_ENTRIES = 32
_SUFFIX = ".marshal"
# bumped when what an entry holds changes meaning
_FORMAT = b"netprobe-configcache-1\n"


def directory() -> str | None:
    """Where entries live, or None when the cache is off."""
    chosen = os.environ.get("NETPROBE_CACHE_DIR")
    if chosen is not None:
        return chosen or None
    base = os.environ.get("XDG_CACHE_HOME") or ""
    if not os.path.isabs(base):  # the XDG spec: a relative path is to be ignored
        home = os.path.expanduser("~")
        if not os.path.isabs(home):
            return None
        base = os.path.join(home, ".cache")
    return os.path.join(base, "netprobe")


def _ours(info: os.stat_result) -> bool:
    return info.st_uid == os.geteuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _reader_stamp() -> bytes:
    """What the kept data depends on besides the text: the code that read it.

    Files, not version numbers: a development checkout changes the reader
    without a release, and `yaml.__version__` would cost PyYAML's import.
    """
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    files = [os.path.join(here, "yamlpos.py"), os.path.join(here, "config.py")]
    spec = importlib.util.find_spec("yaml")
    if spec is not None and spec.origin:
        files.append(spec.origin)
    parts = [_FORMAT]
    for name in files:
        try:
            info = os.stat(name)
        except OSError:
            parts.append(b"-\n")
            continue
        parts.append(f"{name} {info.st_size} {info.st_mtime_ns}\n".encode())
    return b"".join(parts)


def key(text: str) -> str:
    """The name of the entry for `text`."""
    digest = hashlib.sha256(_reader_stamp())
    digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def has(entry: str) -> bool:
    """Whether `get(entry)` would find an entry (it may still be damaged)."""
    where = directory()
    if where is None:
        return False
    try:
        return _ours(os.stat(os.path.join(where, entry + _SUFFIX), follow_symlinks=False)) \
            and _ours(os.stat(where))
    except OSError:
        return False


def get(entry: str) -> dict[str, Any] | None:
    """The data kept under `entry`, or None (absent, damaged, or not ours alone)."""
    where = directory()
    if where is None:
        return None
    path = os.path.join(where, entry + _SUFFIX)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not (_ours(os.fstat(fd)) and _ours(os.stat(where))):
            return None
        data = read_marshalled(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    if type(data) is not dict:
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # recently used: kept longest
    return data


def read_marshalled(fd: int) -> Any:
    """What the whole file `fd` holds, marshalled; None when it cannot be read or
    is not marshal data (`readahead` reads its child's answer with it too)."""
    try:
        blob = os.pread(fd, os.fstat(fd).st_size, 0)
    except OSError:
        return None
    try:
        return marshal.loads(blob)
    except (ValueError, EOFError, TypeError):
        return None


def put(entry: str, data: dict[str, Any]) -> None:
    """Keep `data` under `entry`; quietly nothing when that cannot be done safely."""
    where = directory()
    if where is None:
        return
    try:
        blob = marshal.dumps(data)
    except ValueError:  # not plain data: never from the reader, but not ours to keep
        return
    try:
        if not _make_private_directory(where):
            return
        path = os.path.join(where, entry + _SUFFIX)
        temporary = os.path.join(where, f".{entry}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
            os.replace(temporary, path)  # whole or not at all: a reader never sees half
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        _evict(where)
    except OSError:
        return


def _make_private_directory(where: str) -> bool:
    """`where` exists and is ours alone; made (mode 0700) if it was missing.

    Missing directories are made only under one of ours: root run with another
    user's HOME (sudo keeps it on some systems) must not leave root-owned
    directories in that user's home.
    """
    try:
        return _ours(os.stat(where))
    except FileNotFoundError:
        pass
    parent = os.path.dirname(os.path.abspath(where))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if os.stat(parent).st_uid != os.geteuid():
        return False
    os.makedirs(where, mode=0o700, exist_ok=True)
    return _ours(os.stat(where))


def _evict(where: str) -> None:
    """Keep the MAX_ENTRIES most recently used entries."""
    entries = []
    with os.scandir(where) as found:
        for item in found:
            if item.name.endswith(_SUFFIX) and item.is_file(follow_symlinks=False):
                entries.append((item.stat(follow_symlinks=False).st_mtime_ns, item.path))
    if len(entries) <= MAX_ENTRIES:
        return
    entries.sort()
    for _, path in entries[: len(entries) - MAX_ENTRIES]:
        with contextlib.suppress(OSError):
            os.unlink(path)
