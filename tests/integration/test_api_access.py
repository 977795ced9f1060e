"""The locked control plane, on the real subscriber process: 401 everywhere but /healthz, read-only
tokens, the login with its cookie, throttled guessing, and the admin password made on first start."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.support.agent_process import run_program
from tests.support.broker import Broker
from tests.support.subscriber_process import SubscriberProcess

pytestmark = [pytest.mark.docker]

PASSWORD = "correct horse battery staple"
SAMPLES = {"node_id": "node-a", "container": "c", "field": "cpu_percent"}


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def call(
    port: int, path: str, method: str = "GET", headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request, no redirects followed; (status, headers, body) whatever the status."""
    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method, headers=headers or {})
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def login(port: int, password: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    form = f"password={urllib.parse.quote(password)}&next=%2Fnodes%2Fnode-a".encode()
    return call(port, "/login", "POST", {"content-type": "application/x-www-form-urlencoded", **(headers or {})}, form)


@pytest.fixture
def locked(broker: Broker, tmp_path: Path) -> Iterator[SubscriberProcess]:
    secret = tmp_path / "admin.password"
    secret.write_text(PASSWORD + "\n")
    subscriber = SubscriberProcess(
        broker, tmp_path, auth="true", admin_password_file=str(secret), trusted_proxies="127.0.0.1"
    )
    subscriber.start()
    try:
        yield subscriber
    finally:
        subscriber.kill()


def access(subscriber: SubscriberProcess, *args: str) -> str:
    """`docker compose exec subscriber python -m subscriber.access ARGS`, on the test's database."""
    result = run_program("subscriber.access", *args, OTTO_DB_PATH=subscriber.env["OTTO_DB_PATH"])
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_every_route_but_healthz_needs_credentials(locked: SubscriberProcess) -> None:
    token = access(locked, "create-token", "walker")
    status, _, body = call(locked.port, "/openapi.json", headers={"authorization": f"Bearer {token}"})
    assert status == 200
    paths = json.loads(body)["paths"]
    assert len(paths) >= 10
    checked = []
    for template, operations in paths.items():
        path = re.sub(r"\{(\w+)\}", lambda m: SAMPLES.get(m.group(1), "x"), template)
        for method in operations:
            status, headers, _ = call(locked.port, path, method.upper())
            expected = 200 if template == "/healthz" else 401
            assert status == expected, (method, template, status)
            if expected == 401:
                assert headers["www-authenticate"].startswith("Bearer")
            checked.append(template)
    assert "/api/nodes" in checked
    assert "/metrics" in checked
    # The pages and the OpenAPI document too; a browser asking for a page gets the login form, as a 401.
    for page in ("/", "/nodes/node-a", "/openapi.json", "/api/live"):
        assert call(locked.port, page)[0] == 401, page
    status, _, body = call(locked.port, "/nodes/node-a?range=6h", headers={"accept": "text/html"})
    assert status == 401
    assert b'action="/login"' in body
    assert b'value="/nodes/node-a?range=6h"' in body
    assert call(locked.port, "/static/style.css")[0] == 200  # the login page's own assets


def test_tokens_read_and_do_nothing_else(locked: SubscriberProcess) -> None:
    token = access(locked, "create-token", "prometheus")
    bearer = {"authorization": f"Bearer {token}"}
    assert call(locked.port, "/api/nodes", headers=bearer)[0] == 200
    assert call(locked.port, "/metrics", headers=bearer)[0] == 200
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert call(locked.port, "/api/nodes", method, headers=bearer)[0] == 403, method
    assert call(locked.port, "/api/nodes", headers={"authorization": f"Bearer {token}x"})[0] == 401
    assert "prometheus" in access(locked, "list-tokens")
    access(locked, "revoke-token", "prometheus")
    assert call(locked.port, "/api/nodes", headers=bearer)[0] == 401  # at once, no restart


def test_login_sets_a_strict_http_only_cookie_and_logout_ends_it(locked: SubscriberProcess) -> None:
    assert login(locked.port, "wrong")[0] == 401
    status, headers, _ = login(locked.port, PASSWORD)
    assert status == 303
    assert headers["location"] == "/nodes/node-a"
    cookie = headers["set-cookie"]
    session = cookie.split(";")[0]
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= flags
    assert "secure" not in flags  # plain HTTP here
    assert call(locked.port, "/api/nodes", headers={"cookie": session})[0] == 200
    assert call(locked.port, "/logout", "POST", headers={"cookie": session})[0] == 303
    assert call(locked.port, "/api/nodes", headers={"cookie": session})[0] == 401
    # Behind a trusted HTTPS proxy (OTTO_TRUSTED_PROXIES): the cookie is Secure.
    _, headers, _ = login(locked.port, PASSWORD, {"x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.9"})
    assert "secure" in {part.strip().lower() for part in headers["set-cookie"].split(";")}
    assert "admin logged in from 203.0.113.9" in locked.logs()


def test_guessing_is_throttled_and_the_right_password_waits_too(locked: SubscriberProcess) -> None:
    started = time.monotonic()
    statuses = [login(locked.port, f"guess-{n}")[0] for n in range(30)]
    elapsed = time.monotonic() - started
    assert statuses[:5] == [401] * 5  # five free tries
    assert statuses.count(429) >= 20  # then waits that double; tried meanwhile, refused unchecked
    status, headers, _ = login(locked.port, PASSWORD)
    assert status == 429  # a correct guess during a wait tells the guesser nothing
    wait = int(headers["retry-after"])
    assert 1 <= wait <= 300
    print(f"30 guesses in {elapsed:.2f} s: {statuses.count(401)} checked, {statuses.count(429)} refused unchecked")
    # Another client (through the trusted proxy) is not locked out by this one.
    assert login(locked.port, PASSWORD, {"x-forwarded-for": "198.51.100.7"})[0] == 303


def test_the_first_start_makes_a_password_and_logs_it_once(broker: Broker, tmp_path: Path) -> None:
    first = SubscriberProcess(broker, tmp_path, auth="true").start()
    first.kill()
    second = SubscriberProcess(broker, tmp_path, auth="true").start()
    second.kill()
    lines = [line for line in first.logs().splitlines() if "shown this once" in line]
    assert len(lines) == 1
    assert "shown this once" not in second.logs()  # made once, kept (hashed) in the database
    password = lines[0].split("shown this once: ")[1].split()[0]
    assert len(password) >= 20
    assert password not in "".join(p.read_text(errors="replace") for p in tmp_path.glob("history.db*"))
    third = SubscriberProcess(broker, tmp_path, auth="true").start()
    try:
        assert login(third.port, password)[0] == 303
    finally:
        third.kill()


def test_auth_off_says_so_at_every_start(broker: Broker, tmp_path: Path) -> None:
    subscriber = SubscriberProcess(broker, tmp_path).start()  # OTTO_AUTH=false
    try:
        assert call(subscriber.port, "/api/nodes")[0] == 200
        assert "OTTO_AUTH=false" in subscriber.logs()
    finally:
        subscriber.kill()


def test_a_huge_login_body_is_refused_unread_and_parallel_guesses_get_no_extra_tries(
    locked: SubscriberProcess,
) -> None:
    # An unauthenticated peer announcing 8 MiB: answered before the body is read (it never sends it).
    with socket.create_connection(("127.0.0.1", locked.port), timeout=10) as raw:
        raw.sendall(
            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 8388608\r\n\r\npassword=x"
        )
        assert raw.recv(64).startswith(b"HTTP/1.1 413")
    chunked = b"password=" + b"x" * 8192  # no Content-Length to go by: cut off at the limit
    assert call(locked.port, "/login", "POST", {"content-type": "application/x-www-form-urlencoded"}, chunked)[0] == 413
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(lambda n: login(locked.port, f"parallel-{n}")[0], range(20)))
    assert statuses.count(401) <= 5  # guessing in parallel buys nothing over guessing in a row
    assert statuses.count(429) >= 15
    assert call(locked.port, "/healthz")[0] == 200
