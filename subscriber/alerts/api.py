"""HTTP endpoints of events and alerts: ``/api/nodes/{node_id}/events`` and ``/api/alerts``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from contract.models import ContainerEvent
from contract.topics import NODE_ID_PATTERN
from subscriber.alerts.message import node_link
from subscriber.alerts.store import SqliteAlertStore
from subscriber.series_api import time_range
from subscriber.state import FleetState
from subscriber.store import HistoryStore

NodeIdPath = Annotated[str, Path(pattern=NODE_ID_PATTERN, description="Node id.")]


class DeliveryView(BaseModel):
    """One notification of an alert to one URL (by its position in OTTO_NOTIFY_URLS, from 1)."""

    kind: str = Field(description="firing, resolved or repeat.")
    url: int
    state: str = Field(description="pending (being retried), delivered, failed (given up) or muted.")
    attempts: int
    error: str | None
    updated: datetime


class AlertView(BaseModel):
    id: int
    rule: str
    state: Literal["firing", "resolved"]
    node_id: str
    container: str | None
    image: str | None
    summary: str
    value: str
    since: datetime
    resolved_at: datetime | None
    muted: bool
    link: str
    deliveries: list[DeliveryView]


def events_router(state: FleetState, store: HistoryStore | None) -> APIRouter:
    router = APIRouter()

    @router.get("/api/nodes/{node_id}/events", summary="Container events of one node, newest first")
    def node_events(
        node_id: NodeIdPath,
        start: Annotated[datetime | None, Query(description="ISO 8601; default end - 7 days. Naive = UTC.")] = None,
        end: Annotated[datetime | None, Query(description="ISO 8601; default now. Naive = UTC.")] = None,
        container: Annotated[str | None, Query(max_length=512, description="Container name.")] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
    ) -> list[ContainerEvent]:
        if state.get(node_id) is None:
            raise HTTPException(404, f"unknown node {node_id!r}")
        if store is None:
            raise HTTPException(404, "history is not stored by this subscriber")
        if start is None and end is None:
            start_utc, end_utc = time_range(None, None)
            start_utc = end_utc - timedelta(days=7)
        else:
            start_utc, end_utc = time_range(start, end)
        return store.events(node_id, start_utc, end_utc + timedelta(microseconds=1), limit, container)

    return router


def alerts_router(alerts: Callable[[], SqliteAlertStore | None], public_url: str) -> APIRouter:
    router = APIRouter()

    @router.get("/api/alerts", summary="Alerts, newest first: the active ones, or all recent ones")
    def list_alerts(
        state: Annotated[Literal["firing", "all"], Query(description="firing: active only.")] = "firing",
        node: Annotated[str | None, Query(pattern=NODE_ID_PATTERN)] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
    ) -> list[AlertView]:
        store = alerts()
        if store is None:
            raise HTTPException(404, "alerts are off on this subscriber (OTTO_ALERTS=false)")
        out = []
        for alert, muted in store.alerts(active_only=state == "firing", node_id=node, limit=limit):
            assert alert.id is not None
            out.append(
                AlertView(
                    id=alert.id,
                    rule=alert.rule,
                    state="firing" if alert.resolved_at is None else "resolved",
                    node_id=alert.node_id,
                    container=alert.container or None,
                    image=alert.image or None,
                    summary=alert.summary,
                    value=alert.value,
                    since=alert.since,
                    resolved_at=alert.resolved_at,
                    muted=muted,
                    link=node_link(public_url, alert.node_id),
                    deliveries=[
                        DeliveryView(
                            kind=d.notification.kind,
                            url=d.url_index + 1,
                            state=d.state,
                            attempts=d.attempts,
                            error=d.error,
                            updated=datetime.fromtimestamp(d.updated, UTC),
                        )
                        for d in store.deliveries(alert_id=alert.id)
                    ],
                )
            )
        return out

    return router
