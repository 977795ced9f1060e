"""Container healthcheck: is the agent's heartbeat fresh? Standard library only.

Run as a plain script (``python -I /app/agent/healthcheck.py``) so a check every 30 s on a Pi
does not import the agent's dependencies. Exit 0 if the heartbeat file was touched within three
intervals plus 10 s.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

DEFAULT_HEARTBEAT = "/tmp/otto-agent.heartbeat"


def is_fresh(path: Path, max_age: float) -> bool:
    """True if ``path`` was touched within ``max_age`` seconds."""
    try:
        return time.time() - path.stat().st_mtime <= max_age
    except OSError:
        return False


def max_age(interval: float) -> float:
    return 3 * interval + 10


def _unprivileged() -> None:
    """A healthcheck runs as the container's user: when that is root, leave it first (no capabilities)."""
    run_as = os.environ.get("OTTO_RUN_AS")
    if run_as and os.geteuid() == 0:
        uid, _, gid = run_as.partition(":")
        os.setgroups([])
        os.setgid(int(gid or uid))
        os.setuid(int(uid))


def main() -> int:
    try:
        _unprivileged()
    except (OSError, ValueError):
        return 1
    path = Path(os.environ.get("OTTO_HEARTBEAT_FILE", DEFAULT_HEARTBEAT))
    try:
        interval = float(os.environ.get("OTTO_INTERVAL", "5"))
    except ValueError:
        interval = 5.0
    return 0 if is_fresh(path, max_age(interval)) else 1


if __name__ == "__main__":
    sys.exit(main())
