"""Watching the threads a program cannot do without.

Every loop of ours catches what one cycle or one message raises, so a thread ending early is a
bug or a fault below Python (a failed thread start). Rather than run on half-dead, the program
is told once, logs why, and exits non-zero so that its restart policy starts it afresh.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

#: Exit status of a program that stopped because a thread it needs died (EX_SOFTWARE).
EXIT_THREAD_DIED = 70


class Supervisor:
    """Checks ``threads`` every ``period`` seconds; calls ``on_death(role)`` once when one has ended."""

    def __init__(
        self, threads: Mapping[str, threading.Thread], on_death: Callable[[str], None], period: float = 1.0
    ) -> None:
        self.threads = threads
        self.on_death = on_death
        self.period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="otto-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (call before stopping the watched threads on purpose)."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(self.period + 1.0)

    def dead(self) -> list[str]:
        """Roles whose thread was started and has ended."""
        return [role for role, t in self.threads.items() if t.ident is not None and not t.is_alive()]

    def _watch(self) -> None:
        while not self._stop.wait(self.period):
            dead = self.dead()
            if dead:
                log.critical("the %s thread died; exiting so the program is restarted", ", ".join(dead))
                self.on_death(dead[0])
                return
