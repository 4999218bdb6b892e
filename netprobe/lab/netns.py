"""Named network namespaces (the `ip netns` kind, bind-mounted under /run/netns).

`enter_netns` moves the calling thread into one, the way `ip netns exec` does,
so `netprobe check --netns nplab-office` probes from inside the lab. Call it
before any thread or socket is created: setns(2) changes only the calling
thread, and threads started afterwards inherit it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from pathlib import Path

from netprobe.errors import NetprobeError, PrivilegeError

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000


def netns_path(name: str) -> Path:
    if not name or "/" in name or name in (".", ".."):
        raise NetprobeError(f"--netns {name!r}: not a namespace name")
    return NETNS_DIR / name


def list_netns(prefix: str | None = None) -> list[str]:
    """Names under /run/netns, optionally only `PREFIX-*`, sorted."""
    try:
        names = sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []
    if prefix is None:
        return names
    return [n for n in names if n.startswith(prefix + "-")]


def netns_exists(name: str) -> bool:
    return netns_path(name).exists()


def _lab_up_hint(name: str) -> str:
    """`netprobe lab up`, with `--prefix P` when `name` is P-ROLE of another prefix."""
    from netprobe.lab.lab import DEFAULT_PREFIX, lab_command
    from netprobe.lab.layout import ROLES

    prefix, _, role = name.partition("-")
    return lab_command(prefix if role in ROLES else DEFAULT_PREFIX, "up")


def enter_netns(name: str) -> None:
    """Move the calling thread into network namespace `name` (root needed).

    Raises PrivilegeError without CAP_SYS_ADMIN and NetprobeError when the
    namespace does not exist, each with a message that says what to do.
    """
    path = netns_path(name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetprobeError(
            f"network namespace {name!r} does not exist ({path} is missing); "
            f"list them with `ip netns list`, or build the lab with "
            f"`{_lab_up_hint(name)}`") from None
    except PermissionError:
        raise PrivilegeError(
            f"entering network namespace {name!r} needs root: run with sudo") from None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            if err == errno.EPERM:
                raise PrivilegeError(
                    f"entering network namespace {name!r} needs root (CAP_SYS_ADMIN): "
                    "run with sudo")
            raise NetprobeError(f"cannot enter network namespace {name!r}: {os.strerror(err)}")
    finally:
        os.close(fd)
