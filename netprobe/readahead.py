"""Read a large config's YAML in a forked child while the command starts up.

`check` spends its first ~0.1 s importing typer, pydantic and asyncio, and only
then reads its config; at 10,000 endpoints reading the YAML (PyYAML's import
and libyaml's events) is ~60 ms more, all before the first packet. A config
already read is kept by `configcache` and needs no YAML; for one that is not
(the first run after an edit), `start` forks a child at the very beginning
that reads the text with `yamlpos.parse_plain` on the other CPU and leaves the
plain data in an anonymous file; `claim` hands it to the loader, which then
checks it exactly as if it had read the text itself.

The child only reads: it opens no socket, writes nothing but its anonymous
file, and ends with os._exit. It runs at the lowest priority (nice 19): on an
idle CPU that costs it nothing, and where it shares one with the parent's
start-up it waits, instead of delaying the parent by as much as it saves. The loader uses its data only for the very text
it read itself; a child that failed, or a text that changed meanwhile, means
the text is read in-process as before. Configs under MIN_BYTES are read
in-process; NETPROBE_READAHEAD=0 turns read-ahead off.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import select
import signal
from typing import Any

# ~500 endpoints. PyYAML's import alone is ~10 ms, so a read-ahead pays at any
# size; the few-KiB configs most sites have start without a second process.
MIN_BYTES = 16 * 1024
_WAIT_S = 10.0  # a 2 MiB config (the loader's cap) is read in ~0.3 s
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Ahead:
    """The config text `start` read, its cache entry name, and its reader (if forked)."""

    def __init__(self, text: str, entry: str, pid: int | None, fd: int | None) -> None:
        self.text = text
        self.entry = entry
        self.pid = pid  # the child's, until it is reaped
        self._fd = fd

    def result(self) -> tuple[Any, list[str]] | None:
        """(data, texts) as `parse_plain(text, texts)` gives them, data possibly
        NOT_PLAIN; None when there is no child or it did not finish well."""
        pid, fd = self.pid, self._fd
        if pid is None or fd is None:
            return None
        self.pid = self._fd = None
        from netprobe.configcache import read_marshalled

        try:
            if not _reap(pid, _WAIT_S):
                return None
            got = read_marshalled(fd)
        except OSError:
            return None
        finally:
            os.close(fd)
        if type(got) is not tuple or len(got) != 3:
            return None
        plain, data, texts = got
        if not plain:  # (NOT_PLAIN is an object marshal cannot carry)
            from netprobe.yamlpos import NOT_PLAIN

            data = NOT_PLAIN
        return data, texts


_started: list[Ahead] = []


def start(argv: list[str]) -> Ahead | None:
    """Fork a reader for the config of `check` or `validate` in `argv`, when it
    is large and not kept by configcache; quietly nothing otherwise (None).

    Called before the command line is parsed, so the config is guessed: the
    first `.yaml`/`.yml` word after the command. A wrong guess costs the child's
    work only: `claim` matches texts, not names.
    """
    if os.environ.get("NETPROBE_READAHEAD", "1") == "0" or not hasattr(os, "memfd_create"):
        return None
    words = [a for a in argv[1:] if not a.startswith("-")]
    if not words or words[0] not in ("check", "validate"):
        return None
    path = next((w for w in words[1:] if w.endswith((".yaml", ".yml"))), None)
    if path is None:
        return None
    try:
        if os.stat(path).st_size < MIN_BYTES:
            return None
    except (OSError, ValueError):
        return None
    from netprobe import configcache
    from netprobe.configtext import read_text

    text, problem = read_text(path)
    if problem is not None:
        return None  # the loader reports it, with the file's name
    entry = configcache.key(text)
    if configcache.has(entry):
        ahead = Ahead(text, entry, None, None)  # its entry name saves the loader a hash
        _started.append(ahead)
        return ahead
    try:
        fd = os.memfd_create("netprobe-readahead", os.MFD_CLOEXEC)
    except OSError:
        return None
    # signals wait until the child has its own handlers: the parent's say
    # "stopped while starting" and exit 3, which is the parent's to say
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        pid = os.fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        os.close(fd)
        return None
    if pid == 0:
        _child(text, fd, blocked)
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    ahead = Ahead(text, entry, pid, fd)
    _started.append(ahead)
    return ahead


def claim(text: str) -> Ahead | None:
    """What `start` prepared for exactly this text (once), or None."""
    for i, ahead in enumerate(_started):
        if ahead.text == text:
            del _started[i]
            return ahead
    return None


def _child(text: str, fd: int, blocked: Any) -> None:
    code = 1
    try:
        # the parent's start-up comes first: on a CPU the two share, this one waits
        with contextlib.suppress(OSError):  # (refused by a sandbox: still worth reading)
            os.nice(19)
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        import gc

        gc.disable()  # plain data, no cycles; the process ends right after
        from netprobe.yamlpos import NOT_PLAIN, parse_plain

        texts: list[str] = []
        data = parse_plain(text, texts)
        plain = data is not NOT_PLAIN
        blob = marshal.dumps((plain, data if plain else None, texts))
        view = memoryview(blob)
        while view:
            view = view[os.write(fd, view):]
        code = 0
    except BaseException:  # noqa: BLE001 - the parent reads the text itself
        pass
    finally:
        os._exit(code)


def _reap(pid: int, wait_s: float) -> bool:
    """Wait (at most `wait_s`) for the child; True when it exited with 0."""
    try:
        pidfd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        pidfd = None
    if pidfd is not None:
        try:
            ready, _, _ = select.select([pidfd], [], [], wait_s)
        finally:
            os.close(pidfd)
        if not ready:
            os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0
