"""A config file's text, read as the loader reads it: imports nothing heavy, so
`readahead` can read it before the command line is even parsed."""

from __future__ import annotations

# A config of a few hundred endpoints is tens of kilobytes; the cap keeps a
# wrong file (a log, /dev/zero) from being read and parsed for minutes.
MAX_CONFIG_BYTES = 2 * 1024 * 1024


def read_text(source: str) -> tuple[str, str | None]:
    """The file's text, or a one-line problem (errno text, size, encoding)."""
    try:
        with open(source, "rb") as fh:
            # read one byte past the cap: a pipe or a device has no size to ask
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        return "", f"cannot read the file: {exc.strerror or exc}"
    except ValueError as exc:  # an embedded NUL in the path
        return "", f"cannot read the file: {exc}"
    if len(raw) > MAX_CONFIG_BYTES:
        return "", (f"the file is larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB; "
                    "is it really a netprobe config?")
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return "", (f"{line}:{column}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
                    "save the file as UTF-8")
