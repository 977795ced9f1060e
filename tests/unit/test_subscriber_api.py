"""The HTTP API and /metrics on a populated state and store; bad parameters give 4xx, never 5xx."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from subscriber.api import Liveness, create_app
from subscriber.prometheus import FleetCollector, SubscriberCounters
from subscriber.state import FleetState
from tests.conftest import StoreOpener
from tests.support.messages import T0, container, container_batch, node_metrics, status, ticks


@pytest.fixture
def client(open_store: StoreOpener) -> Iterator[TestClient]:
    """The API on a small fleet, its history in SQLite and in PostgreSQL."""
    now = time.time()
    state = FleetState(stale_after=3.0)
    store = open_store()
    nodes = [node_metrics(at=t, cycle=i + 1, cpu_percent=10.0 + i) for i, t in enumerate(ticks(4))]
    batches = [
        container_batch(at=t, containers=[container("web", cpu_percent=float(i))]) for i, t in enumerate(ticks(4))
    ]
    for n, b in zip(nodes, batches, strict=True):
        state.apply_node_metrics(n, received_at=now)
        state.apply_container_metrics(b, received_at=now)
    state.apply_status(status("node-b", "offline", at=None), received_at=now)
    store.write(nodes, batches, [])
    registry = CollectorRegistry()
    counters = SubscriberCounters(registry)
    counters.rejected.labels("spoofed").inc(3)
    registry.register(FleetCollector(state))
    app = create_app(state, store, registry, lambda: Liveness({"worker": True, "mqtt": True}, True, None))
    with TestClient(app) as test_client:
        yield test_client


def test_list_nodes(client: TestClient) -> None:
    a_received = datetime.fromisoformat(client.get("/api/nodes").json()[0]["last_seen"]).timestamp()
    nodes = client.get("/api/nodes").json()
    assert [n["node_id"] for n in nodes] == ["node-a", "node-b"]
    a, b = nodes
    assert (a["status"], a["cpu_percent"], a["containers"], a["agent_version"]) == ("online", 13.0, 1, "0.1.0")
    assert a["clock_skew_seconds"] == pytest.approx(T0.timestamp() + 15 - a_received, abs=0.01)
    assert (b["status"], b["cpu_percent"], b["containers"]) == ("offline", None, None)
    assert a["last_seen"].endswith("Z")


def test_node_detail(client: TestClient) -> None:
    detail = client.get("/api/nodes/node-a").json()
    assert detail["metrics"]["cycle"] == 4
    assert detail["metrics"]["schema"] == 1
    assert detail["containers"]["containers"][0]["container_name"] == "web"
    assert client.get("/api/nodes/node-b").json()["node_status"]["status"] == "offline"


def test_history_of_node_and_container(client: TestClient) -> None:
    window = {"start": T0.isoformat(), "end": (T0 + timedelta(minutes=1)).isoformat()}
    node = client.get("/api/nodes/node-a/history", params={"field": "cpu_percent", **window}).json()
    assert [p["value"] for p in node["points"]] == [10.0, 11.0, 12.0, 13.0]
    assert node["truncated"] is False
    web = client.get(
        "/api/nodes/node-a/history", params={"field": "cpu_percent", "container": "web", "limit": 2, **window}
    ).json()
    assert [p["value"] for p in web["points"]] == [2.0, 3.0]
    assert web["truncated"] is True
    naive = client.get(
        "/api/nodes/node-a/history",
        params={"field": "cpu_percent", "start": "2026-11-27T10:00:00", "end": "2026-11-27T10:00:06"},
    ).json()
    assert len(naive["points"]) == 2  # naive times are UTC


@pytest.mark.parametrize(
    ("path", "params", "status_code", "message"),
    [
        ("/api/nodes/ghost", {}, 404, "unknown node 'ghost'"),
        ("/api/nodes/ghost/history", {"field": "cpu_percent"}, 404, "unknown node"),
        ("/api/nodes/bad%2Bid", {}, 422, "pattern"),
        ("/api/nodes/node-a/history", {}, 422, "field"),
        ("/api/nodes/node-a/history", {"field": "node_id"}, 422, "unknown node field 'node_id'"),
        ("/api/nodes/node-a/history", {"field": "memory_usage_mb"}, 422, "one of: cycle"),
        ("/api/nodes/node-a/history", {"field": "pids"}, 422, "unknown node field"),
        ("/api/nodes/node-a/history", {"field": "cpu_percent", "container": "ghost"}, 404, "no container 'ghost'"),
        ("/api/nodes/node-a/history", {"field": "cpu_percent", "limit": 0}, 422, "greater than or equal to 1"),
        ("/api/nodes/node-a/history", {"field": "cpu_percent", "limit": 10**12}, 422, "less than or equal to 10000"),
        ("/api/nodes/node-a/history", {"field": "cpu_percent", "limit": "many"}, 422, "valid integer"),
        (
            "/api/nodes/node-a/history",
            {"field": "cpu_percent", "start": "2026-11-27T11:00:00Z", "end": "2026-11-27T10:00:00Z"},
            422,
            "start must be before end",
        ),
        ("/api/nodes/node-a/history", {"field": "cpu_percent", "start": "last tuesday"}, 422, "datetime"),
        ("/api/nodes/node-a/history", {"field": "cpu_percent", "end": "0001-01-01T00:00:00Z"}, 422, "out of range"),
        ("/api/nodes/node-a/history", {"field": "cpu_percent", "start": "9999-12-31T23:59:59Z"}, 422, "before end"),
    ],
)
def test_bad_parameters_are_4xx_with_a_clear_message(
    client: TestClient, path: str, params: dict[str, object], status_code: int, message: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == status_code, response.text
    assert message in response.text


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {
        "status": "ok", "problems": [], "mqtt_connected": True, "worker_alive": True, "store_available": True,
        "nodes": 2,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("liveness", "code", "status", "problems"),
    [
        (Liveness({"worker": True, "mqtt": True}, False, None), 200, "degraded", ["not connected to the broker"]),
        (
            Liveness({"worker": True, "mqtt": True}, True, "database or disk is full"),
            200,
            "degraded",
            ["history store unavailable: database or disk is full"],
        ),
        (Liveness({"worker": True, "mqtt": False}, True, None), 503, "failed", ["the mqtt thread died"]),
        (Liveness({"worker": False, "mqtt": True}, True, None), 503, "failed", ["the worker thread died"]),
    ],
)
def test_healthz_names_every_problem(
    tmp_path: Path, liveness: Liveness, code: int, status: str, problems: list[str]
) -> None:
    app = create_app(FleetState(3.0), None, CollectorRegistry(), lambda: liveness)
    response = TestClient(app).get("/healthz")
    assert response.status_code == code
    assert response.json()["status"] == status
    assert response.json()["problems"] == problems


def test_metrics_exposition(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert samples[("otto_node_up", (("node", "node-a"),))] == 1.0
    assert samples[("otto_node_up", (("node", "node-b"),))] == 0.0
    assert samples[("otto_node_status", (("node", "node-b"), ("status", "offline")))] == 1.0
    assert samples[("otto_node_cpu_percent", (("node", "node-a"),))] == 13.0
    assert samples[("otto_node_memory_used_bytes", (("node", "node-a"),))] == 1500.0 * 2**20
    assert samples[("otto_node_network_receive_bytes_total", (("node", "node-a"),))] == 2000.0
    assert samples[("otto_node_cpu_core_percent", (("core", "1"), ("node", "node-a")))] == 15.0
    web = (("container", "web"), ("image", "nginx:1.27"), ("node", "node-a"))
    assert samples[("otto_container_cpu_percent", web)] == 3.0
    assert samples[("otto_container_memory_usage_bytes", web)] == 40.0 * 2**20
    assert samples[("otto_container_health_status", (*web[:2], ("node", "node-a"), ("status", "healthy")))] == 1.0
    assert samples[("otto_subscriber_messages_rejected_total", (("reason", "spoofed"),))] == 3.0
    assert samples[("otto_subscriber_messages_rejected_total", (("reason", "bad_json"),))] == 0.0


def test_openapi_describes_the_api(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/api/nodes", "/api/nodes/{node_id}", "/api/nodes/{node_id}/history", "/healthz", "/metrics"} <= set(
        spec["paths"]
    )
    assert client.get("/docs").status_code == 404  # Swagger UI would load its scripts from a CDN


_query_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    node=st.one_of(st.just("node-a"), st.just("ghost"), _query_text),
    params=st.dictionaries(
        st.sampled_from(["field", "start", "end", "limit", "container"]),
        st.one_of(
            _query_text,
            st.integers(-(10**20), 10**20).map(str),
            st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
            st.sampled_from(["cpu_percent", "memory_usage_mb", "web", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00"]),
        ),
    ),
)
def test_no_parameters_make_the_api_fail(client: TestClient, node: str, params: dict[str, str]) -> None:
    path = f"/api/nodes/{urllib.parse.quote(node, safe='')}"
    for endpoint in (path, f"{path}/history"):
        response = client.get(endpoint, params=params)
        assert response.status_code < 500, (endpoint, params, response.text)
        if response.status_code >= 400:
            assert response.json()["detail"]  # a message saying what is wrong


def test_prometheus_drops_figures_of_nodes_gone_longer_than_the_grace_and_duplicate_names() -> None:
    now = time.time()
    state = FleetState(stale_after=3.0)
    gone_at = now - 400  # stale for 400 s: past a 300 s grace
    state.apply_node_metrics(node_metrics("gone", at=T0), received_at=gone_at)
    state.apply_container_metrics(container_batch("gone", at=T0), received_at=gone_at)
    state.apply_node_metrics(node_metrics("recent", at=T0), received_at=now - 60)  # stale, within the grace
    twins = [container("twin", cpu_percent=1.0), container("twin", cpu_percent=2.0), container("solo")]
    state.apply_container_metrics(container_batch("recent", at=T0, containers=twins), received_at=now - 60)
    registry = CollectorRegistry()
    registry.register(FleetCollector(state, grace=300.0))
    text = TestClient(create_app(state, None, registry, lambda: Liveness({}, True, None))).get("/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)  # a duplicate series would make this raise
        for s in family.samples
    }
    names = {(name, dict(labels).get("node")) for name, labels in samples}
    # The node stays known (an up == 0 alert keeps firing); its frozen figures are gone.
    assert samples[("otto_node_up", (("node", "gone"),))] == 0.0
    assert ("otto_node_cpu_percent", "gone") not in names
    assert ("otto_container_cpu_percent", "gone") not in names
    assert samples[("otto_node_cpu_percent", (("node", "recent"),))] == 12.5
    assert samples[("otto_node_clock_skew_seconds", (("node", "recent"),))] == pytest.approx(T0.timestamp() - now + 60)
    twin = (("container", "twin"), ("image", "nginx:1.27"), ("node", "recent"))
    assert samples[("otto_container_cpu_percent", twin)] == 1.0  # the first of the two keeps the name
    assert sum(1 for name, labels in samples if name == "otto_container_cpu_percent") == 2
