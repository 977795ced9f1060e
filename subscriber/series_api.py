"""Chart data: every series a chart needs in one request, from the tier that fits the range."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from contract.topics import NODE_ID_PATTERN
from subscriber.rollup import CONTAINER_TIER_FIELDS, MAX_POINTS, NODE_TIER_FIELDS, Kind, TierField, mark_gaps
from subscriber.sqlite_tiers import CORES
from subscriber.state import FleetState
from subscriber.store import HistoryStore, Scope

#: Containers (or cores) one response carries at most; those beyond, in name order, are left out.
MAX_LABELS = 100
_FIELDS: dict[str, dict[str, TierField]] = {
    "node": {f.name: f for f in NODE_TIER_FIELDS},
    "containers": {f.name: f for f in CONTAINER_TIER_FIELDS},
    "cores": {f.name: f for f in CORES.fields},
}
Stat = Literal["avg", "min", "max"]
DEFAULT_WINDOW = timedelta(hours=1)


class SeriesColumn(BaseModel):
    """One line of a chart: a field's statistic, for one container or core when ``label`` is set."""

    field: str
    stat: Literal["avg", "min", "max", "sum"]
    unit: str
    label: str | None = Field(description="Container name or core number; null for the node's own series.")
    values: list[float | None] = Field(description="One per timestamp; null where nothing arrived (a gap).")


class SeriesTable(BaseModel):
    """Columns sharing one time axis: ``timestamps`` are bucket starts in epoch seconds, oldest first."""

    node_id: str
    scope: Scope
    start: datetime
    end: datetime
    source: str = Field(description="raw, or the tier read: 1m, 15m, 2h.")
    step_seconds: int = Field(description="Width of each bucket.")
    timestamps: list[float]
    series: list[SeriesColumn]
    truncated: bool = Field(description=f"True when more than {MAX_LABELS} containers or cores were left out.")


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def time_range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """A query's range in UTC (naive = UTC; default the hour before ``end``, which defaults to now);
    422 when it is out of the calendar or empty."""
    try:
        end_utc = _utc(end) if end is not None else datetime.now(UTC)
        start_utc = _utc(start) if start is not None else end_utc - DEFAULT_WINDOW
    except OverflowError:
        raise HTTPException(422, "start or end is out of range") from None
    if start_utc >= end_utc:
        raise HTTPException(422, "start must be before end")
    return start_utc, end_utc


def series_router(state: FleetState, store: HistoryStore | None) -> APIRouter:
    router = APIRouter()

    @router.get("/api/nodes/{node_id}/series", summary="Chart data for a node, its containers or its cores")
    def series(
        node_id: Annotated[str, Path(pattern=NODE_ID_PATTERN)],
        fields: Annotated[str, Query(max_length=2000, description="Comma-separated field names.")],
        scope: Scope = "node",
        stats: Annotated[str, Query(max_length=40, description="Comma-separated: avg, min, max.")] = "avg",
        start: Annotated[datetime | None, Query(description="ISO 8601; default end - 1 h. Naive = UTC.")] = None,
        end: Annotated[datetime | None, Query(description="ISO 8601; default now. Naive = UTC.")] = None,
        points: Annotated[int, Query(ge=10, le=MAX_POINTS, description="Buckets at most.")] = MAX_POINTS,
    ) -> SeriesTable:
        view = state.get(node_id)
        if view is None:
            raise HTTPException(404, f"unknown node {node_id!r}")
        if store is None:
            raise HTTPException(404, "history is not stored by this subscriber")
        known = _FIELDS[scope]
        wanted = [name.strip() for name in fields.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in known]
        if unknown or not wanted:
            raise HTTPException(422, f"unknown {scope} field {unknown[:1]}; one of: {', '.join(known)}")
        wanted_stats = [s.strip() for s in stats.split(",") if s.strip()]
        if not wanted_stats or any(s not in ("avg", "min", "max") for s in wanted_stats):
            raise HTTPException(422, "stats: a comma-separated list of avg, min, max")
        start_utc, end_utc = time_range(start, end)
        columns = [
            (known[name], "sum" if known[name].kind is Kind.COUNT else stat)
            for name in dict.fromkeys(wanted)
            for stat in (wanted_stats if known[name].kind is not Kind.COUNT else ["sum"])
        ]
        res = store.retention.resolution(start_utc.timestamp(), end_utc.timestamp(), time.time(), points)
        rows = store.buckets(scope, node_id, columns, start_utc, end_utc, res).rows

        labels = list(dict.fromkeys(label for _, label, _ in rows))
        labels.sort(key=lambda label: (int(label) if scope == "cores" and label else 0, label or ""))
        truncated = len(labels) > MAX_LABELS
        labels = labels[:MAX_LABELS]
        stamps = sorted({bucket for bucket, _, _ in rows})
        position = {bucket: i for i, bucket in enumerate(stamps)}
        slot = {label: i for i, label in enumerate(labels)}
        table: list[list[float | None]] = [[None] * len(stamps) for _ in range(len(labels) * len(columns))]
        for bucket, label, values in rows:
            if label in slot:
                for c, value in enumerate(values):
                    table[slot[label] * len(columns) + c][position[bucket]] = value
        timestamps, gapped = mark_gaps(
            [b / 1000 for b in stamps], table, expected=max(float(res.step_seconds), view.interval)
        )
        return SeriesTable(
            node_id=node_id,
            scope=scope,
            start=start_utc,
            end=end_utc,
            source=res.name,
            step_seconds=res.step_seconds,
            timestamps=timestamps,
            series=[
                SeriesColumn(field=f.name, stat=stat, unit=f.unit, label=label, values=gapped[li * len(columns) + c])
                for li, label in enumerate(labels)
                for c, (f, stat) in enumerate(columns)
            ],
            truncated=truncated,
        )

    return router
