"""Runs the real subscriber (``python -m subscriber``) as a child process for integration tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.agent_process import REPO, env_without_otto
from tests.support.broker import Broker, free_port


class SubscriberProcess:
    """``python -m subscriber`` against a test broker, with its API on a free local port."""

    def __init__(self, broker: Broker, workdir: Path, **settings: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.log_path = workdir / f"subscriber-{self.port}.log"
        self.env = env_without_otto() | {
            "OTTO_MQTT_HOST": broker.host,
            "OTTO_MQTT_PORT": str(broker.port),
            "OTTO_MQTT_TLS": "false",  # the plain listener; TLS tests pass broker.tls_settings()
            "OTTO_AUTH": "false",  # tests/integration/test_api_access.py runs it with logins and tokens
            "OTTO_MQTT_USERNAME": "controlplane",
            "OTTO_MQTT_PASSWORD": broker.password("controlplane"),
            "OTTO_DB_PATH": str(workdir / "history.db"),
            "OTTO_API_HOST": "127.0.0.1",
            "OTTO_API_PORT": str(self.port),
            "OTTO_LOG_MESSAGES": "false",
            "PYTHONUNBUFFERED": "1",
        }
        self.env.update({f"OTTO_{k.upper()}": v for k, v in settings.items()})
        self.process: subprocess.Popen[bytes] | None = None
        self.token: str | None = None  # sent as a bearer token by get() when set

    def start(self, wait_connected: bool = True) -> SubscriberProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "subscriber"], cwd=REPO, env=self.env, stdout=log, stderr=log
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                health = self.get("/healthz")
                if health["mqtt_connected"] or not wait_connected:
                    return self
            except (urllib.error.URLError, ConnectionError):
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"subscriber exited:\n{self.logs()[-3000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"subscriber not ready:\n{self.logs()[-3000:]}")

    def get(self, path: str) -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        if self.token is not None:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  (http to 127.0.0.1)
            body = response.read().decode()
        return body if path.split("?", maxsplit=1)[0] == "/metrics" else json.loads(body)

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample's value from /metrics, or None if absent."""
        for family in text_string_to_metric_families(self.get("/metrics")):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return None

    def stop(self, timeout: float = 15) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
