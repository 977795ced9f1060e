"""What the agent process itself costs: resident memory and CPU time.

Read from the process's own ``/proc/self`` and ``time.process_time()`` (nanosecond CPU clock of
all threads), never through psutil, whose PROCFS_PATH points at the host's /proc where our pid
means another process.
"""

from __future__ import annotations

import os
import time

from agent.files import read_bytes
from contract.units import MIB

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Current resident set size of this process, bytes."""
    return int(read_bytes("/proc/self/statm").split()[1]) * _PAGE_SIZE


class SelfMonitor:
    """CPU % of one core used by this process between successive ``sample()`` calls."""

    def __init__(self) -> None:
        self._cpu, self._wall = self._now()

    @staticmethod
    def _now() -> tuple[float, float]:
        return time.process_time(), time.monotonic()

    def sample(self) -> tuple[float, float]:
        """(rss in MiB, CPU % of one core since the previous sample)."""
        cpu, wall = self._now()
        elapsed = wall - self._wall
        percent = (cpu - self._cpu) / elapsed * 100.0 if elapsed > 0 else 0.0
        self._cpu, self._wall = cpu, wall
        return rss_bytes() / MIB, max(0.0, percent)
