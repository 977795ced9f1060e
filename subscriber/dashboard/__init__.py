"""The dashboard: two pages and their static assets, served by the subscriber itself.

``/`` is the fleet, ``/nodes/{node_id}`` one node. The pages are static files that read the API
and the live event streams from the same origin. The Content-Security-Policy allows nothing from
any other origin and no inline script, so even a string a node managed to smuggle into markup
could not run; the scripts put every node-supplied string into the page as text regardless.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contract.topics import NODE_ID_PATTERN

STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def dashboard_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def fleet() -> FileResponse:
        return FileResponse(STATIC / "fleet.html", headers={"cache-control": "no-cache"})

    @router.get("/nodes/{node_id}")
    def node(node_id: Annotated[str, PathParam(pattern=NODE_ID_PATTERN)]) -> FileResponse:
        return FileResponse(STATIC / "node.html", headers={"cache-control": "no-cache"})

    @router.get("/nodes")
    def nodes() -> RedirectResponse:
        return RedirectResponse("/")

    return router


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC)


class SecurityHeaders:
    """Adds the security headers above to every response (the API's JSON included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k.encode() not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)
