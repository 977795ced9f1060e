"""The pure parts of the control plane's access control: hashes, the throttle, where a login may go."""

from __future__ import annotations

from pathlib import Path

import pytest

from subscriber.access.gate import safe_next, session_of
from subscriber.access.passwords import hash_password, token_digest, verify_password
from subscriber.access.store import SqliteAccessStore
from subscriber.access.throttle import GLOBAL_PER_MINUTE, LoginThrottle


def test_scrypt_hashes_verify_and_differ_per_salt() -> None:
    first, second = hash_password("hunter2hunter2", n=2**10), hash_password("hunter2hunter2", n=2**10)
    assert first != second  # salted
    assert first.startswith("scrypt$1024$8$1$")
    assert verify_password("hunter2hunter2", first)
    assert not verify_password("hunter2hunter3", first)
    for broken in ("", "scrypt$x", "bcrypt$1$2$3$4$5", "scrypt$1024$8$1$!!$!!"):
        assert not verify_password("hunter2hunter2", broken)


def test_the_throttle_allows_five_then_doubles_up_to_five_minutes() -> None:
    throttle = LoginThrottle()
    waits = []
    now = 1000.0
    for _ in range(16):
        assert throttle.wait("a", now) == 0 or waits
        throttle.failed("a", now)
        waits.append(throttle.wait("a", now))
        now += waits[-1]  # the client waits exactly as told
    assert waits[:4] == [0, 0, 0, 0]
    assert waits[4:10] == [1, 2, 4, 8, 16, 32]
    assert max(waits) == 300
    assert throttle.wait("b", now) == 0  # another client is not this one's hostage
    throttle.succeeded("a")
    assert throttle.wait("a", now) == 0


def test_many_clients_together_are_throttled_and_the_table_stays_bounded() -> None:
    throttle = LoginThrottle(max_clients=100)
    for n in range(GLOBAL_PER_MINUTE):
        throttle.failed(f"10.0.{n // 250}.{n % 250}", 5000.0)
    assert throttle.wait("192.0.2.1", 5000.5) > 0  # a fresh address waits too
    assert throttle.wait("192.0.2.1", 5061.0) == 0  # a minute later
    for n in range(1000):
        throttle.failed(f"client-{n}", 6000.0 + n * 2)
    assert len(throttle._clients) <= 100


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/nodes/pi-1?range=6h", "/nodes/pi-1?range=6h"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_after_login_only_paths_of_this_site(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_a_malformed_cookie_header_is_no_session() -> None:
    assert session_of('otto_session="unterminated; x=\x00') is None
    assert session_of("a=b; otto_session=abc") == "abc"


def test_only_digests_are_stored(tmp_path: Path) -> None:
    store = SqliteAccessStore(tmp_path / "access.db")
    token = store.create_token("prometheus")
    session = store.create_session(60.0, 1000.0)
    assert store.token_name(token, 1000.0) == "prometheus"
    assert store.session_valid(session, 1059.0)
    assert not store.session_valid(session, 1061.0)
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert token.encode() not in raw
    assert session.encode() not in raw
    assert token_digest(token).encode() in raw
