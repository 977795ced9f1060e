"""The control plane's HTTP API (FastAPI): fleet state, history, health, Prometheus metrics.

OpenAPI is served at ``/openapi.json``; the interactive ``/docs`` page is off, since it would load
its scripts from a CDN (the dashboard makes no request to any other host).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, RedirectResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, Field

from common import __version__
from contract.topics import NODE_ID_PATTERN
from subscriber.access.gate import AccessGate, access_router
from subscriber.access.store import SqliteAccessStore
from subscriber.access.throttle import LoginThrottle
from subscriber.dashboard import SecurityHeaders, dashboard_router, static_files
from subscriber.live import live_router
from subscriber.series_api import series_router, time_range
from subscriber.state import FleetState, NodeView
from subscriber.store import CONTAINER_SERIES_FIELDS, NODE_SERIES_FIELDS, HistoryStore, StoreUnavailable
from subscriber.summaries import FleetSummaries, NodeDetail, NodeSummary

MAX_POINTS = 10_000

NodeIdPath = Annotated[str, Path(pattern=NODE_ID_PATTERN, description="Node id.")]


class Point(BaseModel):
    timestamp: datetime
    value: float | None


class History(BaseModel):
    """A time series of one field, oldest first."""

    node_id: str
    container: str | None
    field: str
    start: datetime
    end: datetime
    points: list[Point]
    truncated: bool = Field(description="True when older points in the range were left out (raise limit).")


@dataclass(frozen=True, slots=True)
class Liveness:
    """What /healthz reports: each thread that matters, the broker connection, the store."""

    threads: dict[str, bool]
    mqtt_connected: bool
    store_problem: str | None


class Health(BaseModel):
    """failed (HTTP 503): a thread the subscriber needs has died (the process is exiting);
    degraded: running, but not connected to the broker or unable to write history."""

    status: Literal["ok", "degraded", "failed"]
    problems: list[str] = Field(description="Why the status is not ok, one line each.")
    mqtt_connected: bool
    worker_alive: bool
    store_available: bool
    nodes: int


def create_app(
    state: FleetState,
    store: HistoryStore | None,
    registry: CollectorRegistry,
    health: Callable[[], Liveness],
    routers: Sequence[APIRouter] = (),
    access: SqliteAccessStore | None = None,
    session_lifetime: float = 7 * 86400.0,
    fleet_registry: CollectorRegistry | None = None,
) -> FastAPI:
    """Build the API around the live state and the store; ``health`` reports the running parts;
    ``routers`` add the endpoints of optional parts (events and alerts); with ``access``, every route
    but /healthz needs the admin's session or an API token (subscriber.access). /metrics serves
    ``registry`` (this process) and ``fleet_registry`` (the fleet), or one of them by ``scope``."""
    app = FastAPI(
        title="otto-metrics control plane",
        version=__version__,
        description="Live state and history of a fleet of Raspberry Pi Docker hosts.",
        docs_url=None,
        redoc_url=None,
    )
    if access is not None:
        app.add_middleware(AccessGate, store=access)  # innermost: its 401s get the headers below too
        app.include_router(access_router(access, LoginThrottle(), session_lifetime))
    else:  # the pages' Log out button with OTTO_AUTH=false: nothing to end

        @app.post("/logout", include_in_schema=False)
        def logout() -> RedirectResponse:
            return RedirectResponse("/", status_code=303)

    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.add_middleware(SecurityHeaders)

    summaries = FleetSummaries(state, store)

    def known(node_id: str) -> NodeView:
        view = state.get(node_id)
        if view is None:
            raise HTTPException(404, f"unknown node {node_id!r}")
        return view

    @app.get("/api/nodes", summary="Every node with its status, last-seen time and a summary")
    def list_nodes() -> list[NodeSummary]:
        return summaries.all()

    @app.get("/api/nodes/{node_id}", summary="Latest node metrics and containers of one node")
    def node_detail(node_id: NodeIdPath) -> NodeDetail:
        return summaries.detail(known(node_id))

    @app.get("/api/nodes/{node_id}/history", summary="Time series of one field, for the node or one container")
    def history(
        node_id: NodeIdPath,
        field: Annotated[str, Query(description="Node field (e.g. cpu_percent, agent_rss_mb) or container field.")],
        start: Annotated[datetime | None, Query(description="ISO 8601; default end - 1 h. Naive = UTC.")] = None,
        end: Annotated[datetime | None, Query(description="ISO 8601; default now. Naive = UTC.")] = None,
        container: Annotated[str | None, Query(max_length=512, description="Container name.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_POINTS, description="Newest points returned.")] = 1000,
    ) -> History:
        view = known(node_id)
        allowed = CONTAINER_SERIES_FIELDS if container is not None else NODE_SERIES_FIELDS
        if field not in allowed:
            kind = "container" if container is not None else "node"
            raise HTTPException(422, f"unknown {kind} field {field!r}; one of: {', '.join(allowed)}")
        start_utc, end_utc = time_range(start, end)
        if store is None:
            raise HTTPException(404, "history is not stored by this subscriber")
        if container is None:
            series = store.node_series(node_id, field, start_utc, end_utc, limit)
        else:
            series = store.container_series(node_id, container, field, start_utc, end_utc, limit)
            current = {c.container_name for c in view.containers.containers} if view.containers else set()
            if not series.points and container not in current:
                raise HTTPException(404, f"no container {container!r} on node {node_id!r} in that range")
        return History(
            node_id=node_id,
            container=container,
            field=field,
            start=start_utc,
            end=end_utc,
            points=[Point(timestamp=t, value=v) for t, v in series.points],
            truncated=series.truncated,
        )

    @app.get("/healthz", summary="Liveness: 200 while every thread runs; degraded states in the body")
    def healthz(response: Response) -> Health:
        live = health()
        dead = [f"the {role} thread died" for role, alive in live.threads.items() if not alive]
        problems = dead + (["not connected to the broker"] if not live.mqtt_connected else [])
        if live.store_problem is not None:
            problems.append(f"history store unavailable: {live.store_problem}"[:300])
        if dead:
            response.status_code = 503
        return Health(
            status="failed" if dead else "degraded" if problems else "ok",
            problems=problems,
            mqtt_connected=live.mqtt_connected,
            worker_alive=live.threads.get("worker", False),
            store_available=live.store_problem is None,
            nodes=len(state.snapshot()),
        )

    @app.exception_handler(StoreUnavailable)
    def store_unavailable(_request: Request, exc: StoreUnavailable) -> JSONResponse:
        return JSONResponse({"detail": f"history store unavailable: {exc}"[:300]}, status_code=503)

    scopes = {
        "all": [r for r in (registry, fleet_registry) if r is not None],
        "fleet": [fleet_registry or registry],
        "replica": [registry],
    }

    @app.get("/metrics", summary="Prometheus exposition", response_class=Response)
    def metrics(
        scope: Annotated[
            Literal["all", "fleet", "replica"],
            Query(description="fleet: the nodes and containers (the same from every replica); replica: this process"),
        ] = "all",
    ) -> Response:
        body = b"".join(generate_latest(r) for r in scopes[scope])
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    app.include_router(series_router(state, store))
    app.include_router(live_router(summaries))
    app.include_router(dashboard_router())
    app.mount("/static", static_files(), name="static")
    return app
