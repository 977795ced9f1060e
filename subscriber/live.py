"""Server-sent events: the overview and a node's page change without a reload.

Each stream checks the live state every ``TICK_SECONDS`` and sends only what changed since its
last event (the first event carries everything), so a node that goes offline or stale shows so
well within a second, and an unchanged node costs an identity check, not a serialisation.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from contract.topics import NODE_ID_PATTERN
from subscriber.access.gate import STILL_ALLOWED
from subscriber.summaries import FleetSummaries

TICK_SECONDS = 0.25
#: A comment line this often keeps proxies from closing a quiet stream.
KEEPALIVE_SECONDS = 15.0


def event(name: str, data: str) -> bytes:
    """One SSE event; ``data`` is JSON, which never contains a raw newline."""
    return f"event: {name}\ndata: {data}\n\n".encode()


def changes(sent: dict[str, str], current: dict[str, str]) -> tuple[list[str], list[str]]:
    """Keys whose JSON differs from what was sent, and keys that disappeared."""
    changed = [key for key, body in current.items() if sent.get(key) != body]
    removed = [key for key in sent if key not in current]
    return changed, removed


async def _stream(request: Request, snapshot: Callable[[], dict[str, str]], name: str) -> AsyncIterator[bytes]:
    sent: dict[str, str] = {}
    quiet = 0.0
    # Set by the access gate: the stream ends when its login or token does (logged out, revoked).
    allowed: Callable[[], bool] = getattr(request.state, STILL_ALLOWED, lambda: True)
    while not await request.is_disconnected() and allowed():
        current = await run_in_threadpool(snapshot)
        changed, removed = changes(sent, current)
        if changed or removed:
            body = ",".join(current[key] for key in changed)
            yield event(name, f'{{"changed":[{body}],"removed":{json.dumps(removed)}}}')
            sent = current
            quiet = 0.0
        elif quiet >= KEEPALIVE_SECONDS:
            yield b": keepalive\n\n"
            quiet = 0.0
        await asyncio.sleep(TICK_SECONDS)
        quiet += TICK_SECONDS


def live_router(summaries: FleetSummaries) -> APIRouter:
    router = APIRouter()
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}

    @router.get("/api/live", summary="Server-sent events: node summaries as they change")
    async def live(request: Request) -> StreamingResponse:
        stream = _stream(request, summaries.all_json, "nodes")
        return StreamingResponse(stream, media_type="text/event-stream", headers=headers)

    @router.get("/api/nodes/{node_id}/live", summary="Server-sent events: one node's detail as it changes")
    async def node_live(request: Request, node_id: Annotated[str, Path(pattern=NODE_ID_PATTERN)]) -> StreamingResponse:
        if summaries.detail_json(node_id) is None:
            raise HTTPException(404, f"unknown node {node_id!r}")

        def one() -> dict[str, str]:
            body = summaries.detail_json(node_id)
            return {node_id: body} if body is not None else {}

        return StreamingResponse(_stream(request, one, "node"), media_type="text/event-stream", headers=headers)

    return router
