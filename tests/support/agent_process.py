"""Runs the real agent (``python -m agent``) as a child process for integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.broker import Broker

REPO = Path(__file__).resolve().parents[2]


class AgentProcess:
    """``python -m agent`` with OTTO_* settings pointing at a test broker; logs go to a file."""

    def __init__(
        self, broker: Broker, node_id: str, workdir: Path, extra_env: dict[str, str] | None = None, **settings: str
    ) -> None:
        self.node_id = node_id
        self.log_path = workdir / f"agent-{node_id}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTTO_")}
        env.update(
            {
                "OTTO_NODE_ID": node_id,
                "OTTO_MQTT_HOST": broker.host,
                "OTTO_MQTT_PORT": str(broker.port),
                "OTTO_MQTT_TLS": "false",  # the plain listener; TLS tests pass broker.tls_settings()
                "OTTO_MQTT_USERNAME": node_id,
                "OTTO_MQTT_PASSWORD": broker.passwords.get(node_id, ""),
                "OTTO_INTERVAL": "1",
                "OTTO_HEARTBEAT_FILE": str(workdir / f"heartbeat-{node_id}"),
                "OTTO_LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update({f"OTTO_{k.upper()}": v for k, v in settings.items()})
        env.update(extra_env or {})
        self.env = env
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent"], cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self._log.close()

    def logs(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.logs():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise TimeoutError(f"{text!r} not in agent log:\n{self.logs()[-3000:]}")


def env_without_otto() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OTTO_")}


def run_program(module: str, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m <module> args`` to completion, with only the given OTTO_* settings."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env={**env_without_otto(), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
