"""A real PostgreSQL for tests (the postgres:17 image), with one fresh database per test."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from testcontainers.core.container import DockerContainer

from tests.support.broker import free_port

POSTGRES_IMAGE = "postgres:17"


@dataclass
class Postgres:
    """A running server: ``url(database)`` for the subscriber, ``restart()`` for fault tests."""

    container: DockerContainer
    port: int
    password: str

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://otto:{self.password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A new empty database; its URL."""
        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        self.container.get_wrapped_container().stop(timeout=10)

    def start(self) -> None:
        self.container.get_wrapped_container().start()
        wait_until_ready(self.url())

    def restart(self) -> None:
        self.stop()
        self.start()


def wait_until_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2) as connection:
                connection.execute("SELECT 1")
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@contextmanager
def start_postgres(durable: bool = False) -> Iterator[Postgres]:
    """The official image's first start (initdb with a generated password), published on a free port;
    ``durable`` keeps PostgreSQL's defaults (fsync at commit), as the benchmark needs."""
    password = secrets.token_urlsafe(18)
    port = free_port()
    container = (
        DockerContainer(POSTGRES_IMAGE)
        .with_env("POSTGRES_USER", "otto")
        .with_env("POSTGRES_PASSWORD", password)
        .with_bind_ports(5432, port)
    )
    if not durable:  # a test server: durability is priced in the benchmark, not here
        container = container.with_command("postgres -c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    container.start()
    try:
        server = Postgres(container, port, password)
        wait_until_ready(server.url())
        yield server
    finally:
        container.stop()
