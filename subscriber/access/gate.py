"""The gate in front of every route but ``/healthz``, the login page and static assets.

A request passes with the admin's session cookie (set by ``POST /login``) or with a read-only
API token (``Authorization: Bearer otto_...``, GET and HEAD only). Otherwise: 401, as JSON for
scripts, and the login page itself for a browser asking for a page. The session cookie is
HttpOnly, SameSite=Strict, and Secure whenever the request came over HTTPS (directly, or through
a proxy named in OTTO_TRUSTED_PROXIES, whose X-Forwarded-Proto uvicorn then honours).
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import time
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from subscriber.access.passwords import verify_password
from subscriber.access.store import SqliteAccessStore
from subscriber.access.throttle import LoginThrottle

log = logging.getLogger(__name__)

COOKIE = "otto_session"
OPEN_PATHS = frozenset({"/healthz", "/login", "/logout"})
OPEN_PREFIXES = ("/static/",)
READ_METHODS = frozenset({"GET", "HEAD"})
#: ``request.state`` attribute: a callable telling a long response (the live streams) whether the
#: session or token it started with is still good, so logging out or revoking ends open streams too.
STILL_ALLOWED = "still_allowed"
RECHECK_SECONDS = 10.0
MAX_FORM_BYTES = 4096


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this site only (never ``//host`` or a URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def login_page(next_path: str, message: str = "") -> str:
    note = f'<p class="login-error" role="alert">{html.escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>otto-metrics: log in</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/style.css"></head>
<body class="login-body"><main class="login"><h1>otto-metrics</h1>{note}
<form method="post" action="/login">
<input type="hidden" name="next" value="{html.escape(safe_next(next_path))}">
<label for="password">Admin password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Log in</button></form></main></body></html>
"""


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def session_of(cookie_header: str) -> str | None:
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(cookie_header)
    except CookieError:  # a malformed Cookie header: no session
        return None
    morsel = cookies.get(COOKIE)
    return morsel.value if morsel else None


class AccessGate:
    """ASGI middleware: see the module docstring."""

    def __init__(self, app: ASGIApp, store: SqliteAccessStore) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        now = time.time()
        authorization = headers.get("authorization", "")
        if authorization[:7].lower() == "bearer ":
            token = authorization[7:].strip()
            name = self.store.token_name(token, now)
            if name is None:
                await self._deny(scope, receive, send, headers, "invalid token")
            elif scope.get("method") not in READ_METHODS:
                await _json(send, 403, {"detail": "API tokens may only read (GET, HEAD)"})
            else:
                self._remember(scope, lambda at: self.store.token_name(token, at) is not None)
                await self.app(scope, receive, send)
            return
        session = session_of(headers.get("cookie", ""))
        if session is not None and self.store.session_valid(session, now):
            self._remember(scope, lambda at: self.store.session_valid(session, at))
            await self.app(scope, receive, send)
            return
        await self._deny(scope, receive, send, headers, "authentication required")

    @staticmethod
    def _remember(scope: Scope, valid: Callable[[float], bool]) -> None:
        checked = [time.time(), True]

        def still_allowed() -> bool:
            now = time.time()
            if now - checked[0] >= RECHECK_SECONDS:
                checked[:] = [now, valid(now)]
            return bool(checked[1])

        scope.setdefault("state", {})[STILL_ALLOWED] = still_allowed

    async def _deny(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str], why: str) -> None:
        if scope.get("method") == "GET" and "text/html" in headers.get("accept", ""):
            query = scope.get("query_string", b"").decode("latin-1")
            target = scope.get("path", "/") + (f"?{query}" if query else "")
            response: Response = HTMLResponse(login_page(target), status_code=401)
        else:
            response = Response(
                json.dumps({"detail": why}),
                status_code=401,
                media_type="application/json",
                headers={"www-authenticate": 'Bearer realm="otto-metrics"'},
            )
        await response(scope, receive, send)


async def _json(send: Send, status: int, body: dict[str, str]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def read_limited(request: Request, limit: int) -> bytes | None:
    """The request body if it is at most ``limit`` bytes, else None, reading no more than that."""
    if int(request.headers.get("content-length") or 0) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def access_router(store: SqliteAccessStore, throttle: LoginThrottle, session_lifetime: float) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    checking = asyncio.Semaphore(1)

    @router.get("/login")
    def login_form(next: str = "/") -> HTMLResponse:
        return HTMLResponse(login_page(next), headers={"cache-control": "no-store"})

    @router.post("/login")
    async def login(request: Request) -> Response:
        body = await read_limited(request, MAX_FORM_BYTES)
        if body is None:
            return HTMLResponse(login_page("/", "That was not a login form."), status_code=413)
        form = parse_qs(body.decode("utf-8", "replace"))
        password = form.get("password", [""])[0]
        target = safe_next(form.get("next", ["/"])[0])
        client = request.client.host if request.client else "unknown"
        stored = store.admin_hash()
        # One check at a time (scrypt holds 32 MiB for 0.1 s), and the throttle consulted once this
        # one's turn comes: guesses sent in parallel wait in line rather than all passing at once.
        async with checking:
            now = time.time()
            wait = throttle.wait(client, now)
            if wait > 0:
                log.warning("login from %s refused: throttled for %.0f s after failed attempts", client, wait)
                page = login_page(target, f"Too many attempts: try again in {wait:.0f} s.")
                return HTMLResponse(page, status_code=429, headers={"retry-after": str(max(1, round(wait)))})
            ok = stored is not None and await run_in_threadpool(verify_password, password, stored)
            if ok:
                throttle.succeeded(client)
            else:
                throttle.failed(client, now)
        if not ok:
            log.warning("failed login from %s", client)
            return HTMLResponse(login_page(target, "Wrong password."), status_code=401)
        session = store.create_session(session_lifetime, now)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            session,
            max_age=int(session_lifetime),
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        log.info("admin logged in from %s", client)
        return response

    @router.post("/logout")
    def logout(request: Request) -> Response:
        session = request.cookies.get(COOKIE)
        if session:
            store.end_session(session)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    return router
