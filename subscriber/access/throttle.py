"""Login throttling: a few tries freely, then an exponentially growing wait, per client and overall.

Checked before the password is hashed, so a flood of guesses costs the control plane nothing but a
dictionary lookup, and a correct password during a wait is refused like a wrong one (a guesser
learns nothing by trying it then).
"""

from __future__ import annotations

from dataclasses import dataclass

FREE_TRIES = 5
MAX_WAIT = 300.0
#: Failures from all clients together within a minute before everyone waits (a guesser with many addresses).
GLOBAL_PER_MINUTE = 60
FORGET_AFTER = 900.0


@dataclass
class _Client:
    failures: int = 0
    last_failure: float = 0.0
    blocked_until: float = 0.0


class LoginThrottle:
    """Per-client failure counts with backoff (clock passed in: pure and testable)."""

    def __init__(self, free_tries: int = FREE_TRIES, max_wait: float = MAX_WAIT, max_clients: int = 10_000) -> None:
        self.free_tries = free_tries
        self.max_wait = max_wait
        self.max_clients = max_clients
        self._clients: dict[str, _Client] = {}
        self._recent: list[float] = []

    def wait(self, client: str, now: float) -> float:
        """Seconds ``client`` must wait before its next try (0: it may try now)."""
        self._recent = [t for t in self._recent if now - t < 60.0]
        if len(self._recent) >= GLOBAL_PER_MINUTE:
            return 60.0 - (now - self._recent[0])
        state = self._clients.get(client)
        return max(0.0, state.blocked_until - now) if state else 0.0

    def failed(self, client: str, now: float) -> None:
        self._recent.append(now)
        state = self._clients.get(client)
        if state is None or now - state.last_failure > FORGET_AFTER:
            if len(self._clients) >= self.max_clients:  # bounded: the oldest goes
                oldest = min(self._clients, key=lambda c: self._clients[c].last_failure)
                del self._clients[oldest]
            state = self._clients[client] = _Client()
        state.failures += 1
        state.last_failure = now
        if state.failures >= self.free_tries:
            state.blocked_until = now + min(self.max_wait, 2.0 ** (state.failures - self.free_tries))

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)
