"""Reading the host's small pseudo-files (procfs, sysfs, cgroupfs): one place, three shapes.

These files are generated on each read and are a page or less, so a plain read is right; the
cgroup reader's hot path takes bytes (no text wrapper, no decoding of what it does not use).
"""

from __future__ import annotations

from pathlib import Path


def read_bytes(path: str | Path) -> bytes:
    """The whole file as bytes; raises OSError."""
    with open(path, "rb") as handle:
        return handle.read()


def read_text(path: str | Path) -> str:
    """The whole file as ASCII text (anything else replaced); raises OSError."""
    return read_bytes(path).decode("ascii", "replace")


def read_optional(path: str | Path) -> str | None:
    """The file's text without surrounding whitespace, or None if it cannot be read (absent source)."""
    try:
        return read_text(path).strip()
    except OSError:
        return None
