"""Real notification receivers for tests: an HTTP server for Apprise's JSON webhook, an SMTP server.

Both record what arrives, with the arrival time, and can be taken down and brought back on the
same port (a notification endpoint that is down and returns).
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.broker import free_port


@dataclass(frozen=True)
class Received:
    title: str
    body: str
    kind: str  # Apprise's type: info, success, warning, failure
    at: float  # epoch seconds


class _Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self._lock = threading.Lock()
        self._received: list[Received] = []

    def record(self, received: Received) -> None:
        with self._lock:
            self._received.append(received)

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def titles(self) -> list[str]:
        return [r.title for r in self.received]

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 60.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.received):
                return self.received
            time.sleep(0.05)
        raise TimeoutError(f"not received in {timeout} s; got: {self.titles()}")

    def wait_for_title(self, *parts: str, timeout: float = 60.0) -> Received:
        def match(r: Received) -> bool:
            return all(p in r.title for p in parts)

        self.wait_for(lambda got: any(match(r) for r in got), timeout)
        return next(r for r in self.received if match(r))


class WebhookReceiver(_Receiver):
    """Receives ``json://127.0.0.1:<port>/hook`` (Apprise's JSON: version, title, message, type)."""

    def __init__(self) -> None:
        super().__init__()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                payload: dict[str, Any] = json.loads(self.rfile.read(length))
                receiver.record(Received(payload["title"], payload["message"], payload["type"], time.time()))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class SmtpReceiver(_Receiver):
    """A local SMTP server (aiosmtpd); Apprise's ``mailto://`` without TLS or login delivers to it."""

    def __init__(self) -> None:
        super().__init__()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"mailto://127.0.0.1:{self.port}?mode=insecure&from=otto@example.com&to=ops@example.com"

    def start(self) -> SmtpReceiver:
        receiver = self

        class Handler:
            async def handle_DATA(self, _server: object, _session: object, envelope: Any) -> str:
                message = email.message_from_bytes(envelope.content, policy=email.policy.default)
                part = message.get_body(preferencelist=("plain", "html"))
                body = part.get_content() if part is not None else ""
                receiver.record(Received(str(message["subject"]), body, "email", time.time()))
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
