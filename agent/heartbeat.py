"""A file whose freshness tells the container healthcheck that the collection loop is alive."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


class Heartbeat:
    """Touches ``path`` once per cycle."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._failed = False

    def beat(self) -> None:
        try:
            self.path.touch()
        except OSError as exc:
            if not self._failed:
                log.warning("cannot write heartbeat %s: %s (the healthcheck will fail)", self.path, exc)
            self._failed = True
