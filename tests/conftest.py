"""Shared fixtures: the Docker gate, a real authenticated Mosquitto, MQTT recorders, agent processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from subscriber.postgres_store import PostgresHistoryStore
from subscriber.rollup import Retention
from subscriber.store import SqliteHistoryStore
from tests.support.broker import Broker, start_broker
from tests.support.docker_gate import require_docker
from tests.support.postgres import Postgres, start_postgres

#: Either store; ``count`` (rows per table) is on both, outside the HistoryStore protocol.
AnyStore = SqliteHistoryStore | PostgresHistoryStore
#: ``open_store(name="h", retention=None)``: the same name opens the same history again.
StoreOpener = Callable[..., AnyStore]

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("docker") is not None:
        require_docker()


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    require_docker()
    client = docker.from_env(timeout=60)
    yield client
    client.close()


@pytest.fixture
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A fresh Mosquitto with the shipped config, credentials for controlplane, node-a and node-b."""
    require_docker()
    with start_broker(tmp_path_factory.mktemp("broker"), nodes=["node-a", "node-b"]) as running:
        yield running


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """One real PostgreSQL for the session; tests take databases of their own from it."""
    require_docker()
    with start_postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.docker)])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreOpener]:
    """Opens history stores of one kind (each test runs on SQLite and on PostgreSQL); closes them after."""
    opened: list[AnyStore] = []
    urls: dict[str, str] = {}

    def open_one(name: str = "h", retention: Retention | None = None) -> AnyStore:
        store: AnyStore
        if request.param == "postgres":
            server: Postgres = request.getfixturevalue("postgres_server")
            if name not in urls:
                urls[name] = server.new_database()
            store = PostgresHistoryStore(urls[name], retention)
        else:
            store = SqliteHistoryStore(tmp_path / f"{name}.db", retention=retention)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()
