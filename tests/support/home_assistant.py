"""A real Home Assistant (from PyPI, in a container built from the Python stand-in) for the discovery tests.

The image (tests/homeassistant/image) is built on first use. Onboarding and the MQTT integration are
set up through Home Assistant's own HTTP API, as its frontend would: no storage files are forged.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests

from tests.support.broker import Broker, free_port
from tests.support.docker_gate import require_docker

IMAGE = "otto-metrics/homeassistant-test:local"
CONTEXT = Path(__file__).resolve().parents[1] / "homeassistant" / "image"
T = TypeVar("T")


def build_image() -> None:
    """Build the Home Assistant image (cached by Docker; about 2 minutes the first time)."""
    require_docker()
    subprocess.run(["docker", "build", "-q", "-t", IMAGE, str(CONTEXT)], check=True, capture_output=True, timeout=1800)


@dataclass
class HomeAssistant:
    """One Home Assistant container, onboarded, with its MQTT integration on the test broker."""

    broker: Broker
    port: int = field(default_factory=free_port)
    user: str = "otto"
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    container: str = ""
    tokens: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HomeAssistant:
        self.container = subprocess.run(
            ["docker", "run", "-d", "--name", f"homeassistant-{secrets.token_hex(3)}",
             "--add-host", "host.docker.internal:host-gateway",
             "-p", f"127.0.0.1:{self.port}:8123", IMAGE],
            check=True, capture_output=True, text=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        wait(self.answers, 180, "Home Assistant never answered", self.logs)
        self._onboard()
        self._add_mqtt()
        return self

    def answers(self) -> bool:
        try:
            if self.tokens:  # onboarded: the API answers those who log in
                return requests.get(f"{self.url}/api/", headers=self._auth, timeout=2).status_code == 200
            return requests.get(f"{self.url}/api/onboarding", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def _onboard(self) -> None:
        client_id = f"{self.url}/"
        answer = requests.post(
            f"{self.url}/api/onboarding/users",
            json={"client_id": client_id, "name": "Otto", "username": self.user, "password": self.password,
                  "language": "en"},
            timeout=30,
        )  # fmt: skip
        answer.raise_for_status()
        token = requests.post(
            f"{self.url}/auth/token",
            data={"grant_type": "authorization_code", "code": answer.json()["auth_code"], "client_id": client_id},
            timeout=30,
        )
        token.raise_for_status()
        self.tokens = token.json()
        for step, body in (("core_config", {}), ("analytics", {})):
            requests.post(
                f"{self.url}/api/onboarding/{step}", json=body, headers=self._auth, timeout=30
            ).raise_for_status()
        redirect = f"{client_id}?auth_callback=1"
        self.post("/api/onboarding/integration", {"client_id": client_id, "redirect_uri": redirect})

    def _add_mqtt(self) -> None:
        """The README's steps: the MQTT integration over TLS (8883), the control plane's CA uploaded
        as a custom CA (Advanced options), the add-homeassistant credential."""
        assert self.broker.tls_port is not None
        assert self.broker.ca_file is not None
        upload = requests.post(
            f"{self.url}/api/file_upload",
            files={"file": ("otto-ca.crt", self.broker.ca_file.read_bytes(), "application/x-pem-file")},
            headers=self._auth,
            timeout=30,
        )
        upload.raise_for_status()
        flow = self.post("/api/config/config_entries/flow", {"handler": "mqtt", "show_advanced_options": True})
        path = f"/api/config/config_entries/flow/{flow['flow_id']}"
        basic = {"broker": "host.docker.internal", "port": self.broker.tls_port, "username": "homeassistant",
                 "password": self.broker.password("homeassistant")}  # fmt: skip
        step = self.post(path, {**basic, "advanced_options": True})
        assert step.get("type") == "form", step  # the advanced options
        custom = {**basic, "set_ca_cert": "custom"}
        step = self.post(path, custom)
        assert step.get("type") == "form", step  # now asking for the CA file
        step = self.post(path, {**custom, "certificate": upload.json()["file_id"]})
        assert step.get("type") == "create_entry", step

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}

    def post(self, path: str, body: dict[str, Any]) -> Any:
        answer = requests.post(f"{self.url}{path}", json=body, headers=self._auth, timeout=30)
        assert answer.ok, f"{path}: HTTP {answer.status_code}: {answer.text[:500]}"
        return answer.json()

    def states(self) -> dict[str, dict[str, Any]]:
        answer = requests.get(f"{self.url}/api/states", headers=self._auth, timeout=30)
        answer.raise_for_status()
        return {state["entity_id"]: state for state in answer.json()}

    def template(self, text: str) -> str:
        answer = requests.post(f"{self.url}/api/template", json={"template": text}, headers=self._auth, timeout=30)
        answer.raise_for_status()
        return answer.text

    def local_storage_tokens(self) -> dict[str, Any]:
        """What Home Assistant's frontend keeps in localStorage (``hassTokens``) after a login."""
        return {
            **self.tokens,
            "hassUrl": self.url,
            "clientId": f"{self.url}/",
            "expires": int(time.time() * 1000) + int(self.tokens["expires_in"]) * 1000,
        }

    def logs(self) -> str:
        result = subprocess.run(["docker", "logs", self.container], capture_output=True, text=True, timeout=30)
        return result.stdout + result.stderr

    def stop(self) -> None:
        if self.container:
            subprocess.run(["docker", "rm", "-f", self.container], capture_output=True, timeout=60)


def wait(check: Callable[[], T | None], timeout: float, message: str, details: Callable[[], str] = str) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``message`` and ``details()``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"{message}\n{details()[-4000:]}")
