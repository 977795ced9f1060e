"""A fake Docker Engine for unit tests: a real HTTP server on loopback that serves recorded replies.

As Telegraf's docker input tests serve ``testcases/<case>/{list,inspect,stats}.json``, this serves
the list, inspect and stats replies a test sets, for the real Docker SDK client that the
collector's ``client_factory`` returns. A test scripts the cases the real engine cannot be made to
produce on demand: a container that vanishes between the list and the stats call, a restart, a
stats call that hangs past the timeout, the daemon going away and coming back.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import docker

API_VERSION = "1.41"
_INSPECT = re.compile(r"^/v[\d.]+/containers/([0-9a-zA-Z_.-]+)/json$")
_STATS = re.compile(r"^/v[\d.]+/containers/([0-9a-zA-Z_.-]+)/stats$")


@dataclass
class FakeContainer:
    """What the fake engine says of one container; ``stats`` is served in turn, the last one repeated."""

    container_id: str
    name: str
    stats: list[dict[str, Any]]
    image: str = "busybox:1.36"
    status: str = "Up 5 minutes"
    restart_count: int = 0
    started_at: str = "2026-11-27T09:00:00.000000000Z"
    pid: int = 0  # 0: no cgroup to locate, so stats come from the API
    listed_only: bool = False  # listed, but gone by the time it is inspected or sampled (HTTP 404)
    stats_delay: float = 0.0  # seconds before a stats reply: past the client's timeout is a timeout
    on_inspect: Callable[[], None] | None = None  # runs before each inspect reply (e.g. host time passing)
    served: int = field(default=0, init=False)

    def list_entry(self) -> dict[str, Any]:
        return {"Id": self.container_id, "Names": [f"/{self.name}"], "Image": self.image, "State": "running",
                "Status": self.status}  # fmt: skip

    def inspect(self) -> dict[str, Any]:
        return {"Id": self.container_id, "RestartCount": self.restart_count,
                "State": {"Pid": self.pid, "StartedAt": self.started_at, "Running": True},
                "HostConfig": {"NetworkMode": "bridge", "CgroupParent": ""}}  # fmt: skip

    def next_stats(self) -> dict[str, Any]:
        reply = self.stats[min(self.served, len(self.stats) - 1)]
        self.served += 1
        return reply


class FakeEngine:
    """The containers it lists, and a server for them on 127.0.0.1; ``down()``/``up()`` make an outage."""

    def __init__(self) -> None:
        self.containers: dict[str, FakeContainer] = {}
        self.odd_entries: list[object] = []  # served in the list reply as they are, after the containers
        self.requests: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    def add(self, container: FakeContainer) -> FakeContainer:
        self.containers[container.container_id] = container
        return container

    def client_factory(self, timeout: int, pool: int) -> docker.DockerClient:
        """For ContainerCollector(client_factory=...): the real SDK client, pointed at this engine."""
        return docker.DockerClient(
            base_url=f"tcp://127.0.0.1:{self.port}", version=API_VERSION, timeout=timeout, max_pool_size=pool
        )

    def up(self) -> None:
        engine = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                engine.requests.append(path)
                if path.endswith("/containers/json"):
                    return self._reply(200, [c.list_entry() for c in engine.containers.values()] + engine.odd_entries)
                for pattern, kind in ((_INSPECT, "inspect"), (_STATS, "stats")):
                    match = pattern.match(path)
                    if match:
                        container = engine.containers.get(match.group(1))
                        if container is None or container.listed_only:
                            return self._reply(404, {"message": f"No such container: {match.group(1)}"})
                        if kind == "inspect":
                            if container.on_inspect is not None:
                                container.on_inspect()
                            return self._reply(200, container.inspect())
                        time.sleep(container.stats_delay)
                        return self._reply(200, container.next_stats())
                return self._reply(404, {"message": f"not faked: {path}"})

            def _reply(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        """Stop answering: connections are refused, as when the daemon is stopped."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@contextmanager
def fake_engine() -> Iterator[FakeEngine]:
    engine = FakeEngine()
    engine.up()
    try:
        yield engine
    finally:
        engine.down()
