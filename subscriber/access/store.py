"""The admin's password hash, API tokens and login sessions, in the subscriber's SQLite file.

Only digests of secrets are stored: a copy of the database gives no way in. One connection behind
a lock: the gate runs on the event loop, the ``otto-access`` commands in another process (SQLite's
WAL lets both in).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from subscriber.access.passwords import new_token, token_digest

NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
#: last_used is written at most this often per token (a Prometheus scrape every 15 s must not write each time).
TOUCH_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class TokenInfo:
    name: str
    created: float
    last_used: float | None


class SqliteAccessStore:
    """See the module docstring."""

    def __init__(self, path: Path | str) -> None:
        self._db = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS access_admin (id INTEGER PRIMARY KEY CHECK (id = 1), "
                "password_hash TEXT NOT NULL, changed REAL NOT NULL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS access_tokens (name TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE, "
                "created REAL NOT NULL, last_used REAL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS access_sessions (digest TEXT PRIMARY KEY, expires REAL NOT NULL)"
            )

    def close(self) -> None:
        self._db.close()

    # -- the admin ----------------------------------------------------------------------------------

    def admin_hash(self) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT password_hash FROM access_admin WHERE id = 1").fetchone()
        return str(row[0]) if row else None

    def set_admin_hash(self, password_hash: str) -> None:
        """Replace the admin's password; every session ends with it."""
        with self._lock:
            self._db.execute(
                "INSERT INTO access_admin (id, password_hash, changed) VALUES (1, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET password_hash = excluded.password_hash, changed = excluded.changed",
                (password_hash, time.time()),
            )
            self._db.execute("DELETE FROM access_sessions")

    # -- tokens -------------------------------------------------------------------------------------

    def create_token(self, name: str) -> str:
        """A new read-only token called ``name`` (replacing one of that name); shown once, stored as a digest."""
        token = new_token()
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO access_tokens (name, digest, created, last_used) VALUES (?, ?, ?, NULL)",
                (name, token_digest(token), time.time()),
            )
        return token

    def tokens(self) -> list[TokenInfo]:
        with self._lock:
            rows = self._db.execute("SELECT name, created, last_used FROM access_tokens ORDER BY name").fetchall()
        return [TokenInfo(*row) for row in rows]

    def revoke_token(self, name: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM access_tokens WHERE name = ?", (name,)).rowcount > 0

    def token_name(self, token: str, now: float) -> str | None:
        """The name of the token ``token`` is, or None (looked up by digest: no secret is compared)."""
        digest = token_digest(token)
        with self._lock:
            row = self._db.execute("SELECT name, last_used FROM access_tokens WHERE digest = ?", (digest,)).fetchone()
            if row is None:
                return None
            if row[1] is None or now - row[1] > TOUCH_EVERY:
                self._db.execute("UPDATE access_tokens SET last_used = ? WHERE digest = ?", (now, digest))
        return str(row[0])

    # -- sessions -----------------------------------------------------------------------------------

    def create_session(self, lifetime: float, now: float) -> str:
        session = new_token()
        with self._lock:
            self._db.execute("DELETE FROM access_sessions WHERE expires <= ?", (now,))
            self._db.execute(
                "INSERT INTO access_sessions (digest, expires) VALUES (?, ?)", (token_digest(session), now + lifetime)
            )
        return session

    def session_valid(self, session: str, now: float) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT expires FROM access_sessions WHERE digest = ?", (token_digest(session),)
            ).fetchone()
        return row is not None and row[0] > now

    def end_session(self, session: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM access_sessions WHERE digest = ?", (token_digest(session),))
