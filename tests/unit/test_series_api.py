"""Chart data and the dashboard's pages: tier choice, aligned columns, gaps, limits, headers."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from subscriber.api import Liveness, create_app
from subscriber.dashboard import STATIC
from subscriber.live import changes, event
from subscriber.postgres_store import PostgresHistoryStore
from subscriber.state import FleetState
from subscriber.store import HistoryStore
from tests.conftest import StoreOpener
from tests.support.history import CONTAINERS, seed

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.docker)])
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The API on a year of history, in SQLite and in PostgreSQL."""
    store: HistoryStore
    if request.param == "postgres":
        store = seed(
            PostgresHistoryStore(request.getfixturevalue("postgres_server").new_database()), ["pi-history"], NOW
        )
    else:
        store = seed(tmp_path_factory.mktemp("series") / "h.db", ["pi-history"], NOW)
    state = FleetState(stale_after=3.0)
    for view in store.latest_views():
        state.restore(view)
    app = create_app(state, store, CollectorRegistry(), lambda: Liveness({"worker": True}, True, None))
    with TestClient(app) as test_client:
        yield test_client
    store.close()


def series(client: TestClient, seconds: float, **params: Any) -> dict[str, Any]:
    query = {"start": (NOW - timedelta(seconds=seconds)).isoformat(), "end": NOW.isoformat(), **params}
    response = client.get("/api/nodes/pi-history/series", params=query)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    ("seconds", "source"), [(3600, "raw"), (86400, "raw"), (7 * 86400, "1m"), (30 * 86400, "15m"), (365 * 86400, "2h")]
)
def test_every_range_has_data_from_the_right_source_within_the_point_budget(
    client: TestClient, seconds: int, source: str
) -> None:
    body = series(client, seconds, fields="cpu_percent,temperature_c", stats="avg,max")
    assert body["source"] == source
    assert 10 < len(body["timestamps"]) <= 1500 * 1.05  # gap markers may add a few
    assert [(c["field"], c["stat"]) for c in body["series"]] == [
        ("cpu_percent", "avg"), ("cpu_percent", "max"), ("temperature_c", "avg"), ("temperature_c", "max"),
    ]  # fmt: skip
    for column in body["series"]:
        assert len(column["values"]) == len(body["timestamps"])
        assert sum(v is not None for v in column["values"]) > 10
    stamps = body["timestamps"]
    assert stamps == sorted(stamps)
    with_data = [t for i, t in enumerate(stamps) if any(c["values"][i] is not None for c in body["series"])]
    assert all(t % body["step_seconds"] == 0 for t in with_data)  # bucket starts; gap markers fall between


def test_peaks_are_never_below_averages(client: TestClient) -> None:
    body = series(client, 30 * 86400, fields="cpu_percent", stats="avg,max,min")
    avg, peak, low = (c["values"] for c in body["series"])
    pairs = [(a, p, lo) for a, p, lo in zip(avg, peak, low, strict=True) if a is not None]
    assert pairs
    assert all(lo <= a <= p for a, p, lo in pairs)


def test_containers_and_cores_come_one_series_each(client: TestClient) -> None:
    body = series(client, 3600, scope="containers", fields="cpu_percent,memory_usage_mb")
    assert sorted({c["label"] for c in body["series"]}) == sorted(CONTAINERS)
    memory = {c["label"]: c["values"] for c in body["series"] if c["field"] == "memory_usage_mb"}
    assert {v for v in memory["db"] if v is not None} == {200.0}
    cores = series(client, 7 * 86400, scope="cores", fields="cpu")
    assert [c["label"] for c in cores["series"]] == ["0", "1", "2", "3"]


def test_counts_are_summed_and_rates_come_from_counters(client: TestClient) -> None:
    body = series(client, 3600, fields="cycles_lost,network_sent_rate", stats="avg")
    kinds = {c["field"]: (c["stat"], c["unit"]) for c in body["series"]}
    assert kinds == {"cycles_lost": ("sum", "cycles"), "network_sent_rate": ("avg", "B/s")}
    sent = next(c for c in body["series"] if c["field"] == "network_sent_rate")
    assert {round(v) for v in sent["values"] if v is not None} == {12_000}  # the seed sends 12 kB/s


def test_a_silence_is_a_gap_not_a_line(open_store: StoreOpener) -> None:
    store = open_store("gap")
    from tests.support.messages import node_metrics  # noqa: PLC0415

    start = NOW - timedelta(minutes=30)
    times = [start + timedelta(seconds=5 * i) for i in range(360) if not 100 <= i < 160]  # 5 minutes missing
    store.write([node_metrics("gappy", at=t, cycle=i + 1) for i, t in enumerate(times)], [], [])
    state = FleetState(stale_after=3.0)
    state.apply_node_metrics(node_metrics("gappy", at=times[-1]), received_at=time.time())
    app = create_app(state, store, CollectorRegistry(), lambda: Liveness({}, True, None))
    with TestClient(app) as local:
        body = local.get("/api/nodes/gappy/series", params={"fields": "cpu_percent", "start": start.isoformat(),
                                                             "end": NOW.isoformat()}).json()  # fmt: skip
    values = body["series"][0]["values"]
    assert values.count(None) == 1
    at = values.index(None)
    assert 5 * 60 < body["timestamps"][at + 1] - body["timestamps"][at - 1] <= 5 * 62  # the missing 5 minutes


@pytest.mark.parametrize(
    ("params", "status"),
    [({"fields": "nope"}, 422), ({"fields": ""}, 422), ({"fields": "cpu_percent", "stats": "median"}, 422),
     ({"fields": "cpu_percent", "scope": "disks"}, 422), ({"fields": "cpu_percent", "points": "5"}, 422),
     ({"fields": "cpu_percent", "start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, 422),
     ({"fields": "cpu_percent; DROP TABLE node_samples"}, 422)],
)  # fmt: skip
def test_bad_requests_are_refused(client: TestClient, params: dict[str, str], status: int) -> None:
    assert client.get("/api/nodes/pi-history/series", params=params).status_code == status
    assert client.get("/api/nodes/nobody/series", params={"fields": "cpu_percent"}).status_code == 404


def test_pages_are_served_with_a_policy_that_allows_only_this_origin(client: TestClient) -> None:
    for path in ("/", "/nodes/pi-history"):
        page = client.get(path)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        for directive in ("default-src 'none'", "script-src 'self'", "connect-src 'self'"):
            assert directive in policy
        assert "http" not in page.text.replace("http-equiv", "")  # no absolute URL to any host
    assert client.get("/nodes/bad%20id").status_code == 422
    assert client.get("/api/nodes").headers["x-content-type-options"] == "nosniff"


def test_vendored_assets_are_the_pinned_release() -> None:
    manifest = json.loads((STATIC / "vendor" / "VENDOR.json").read_text())
    lock = json.loads((Path(__file__).parents[2] / "web" / "package-lock.json").read_text())
    assert manifest["uplot"]["version"] == lock["packages"]["node_modules/uplot"]["version"]
    for name, digest in manifest["uplot"]["files"].items():
        assert hashlib.sha256((STATIC / "vendor" / name).read_bytes()).hexdigest() == digest, name


def test_live_events_carry_only_what_changed() -> None:
    assert changes({"a": "1", "b": "2"}, {"a": "1", "b": "3", "c": "4"}) == (["b", "c"], [])
    assert changes({"a": "1", "b": "2"}, {"a": "1"}) == ([], ["b"])
    assert event("nodes", '{"x":1}') == b'event: nodes\ndata: {"x":1}\n\n'
