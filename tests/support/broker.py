"""A real Mosquitto for tests: the shipped mosquitto.conf and otto-auth credentials, via testcontainers."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

REPO = Path(__file__).resolve().parents[2]
BROKER_IMAGE = "eclipse-mosquitto:2"
MOSQUITTO_UID = "1883:1883"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_otto_auth(workdir: Path, *args: str) -> str:
    """Run mosquitto/otto-auth in a throwaway broker container on ``workdir``/{auth,secrets}."""
    result = subprocess.run(
        [
            "docker", "run", "--rm", "-u", MOSQUITTO_UID,
            "-v", f"{REPO / 'mosquitto' / 'otto-auth'}:/usr/local/bin/otto-auth:ro",
            "-v", f"{workdir / 'auth'}:/mosquitto/auth",
            "-v", f"{workdir / 'secrets'}:/mosquitto/secrets",
            BROKER_IMAGE, "otto-auth", *args,
        ],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return result.stdout


@dataclass
class BrokerAddress:
    """Where a broker listens, and the passwords the test knows."""

    port: int
    passwords: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"

    def password(self, user: str) -> str:
        return self.passwords[user]


@dataclass
class Broker(BrokerAddress):
    """A broker container started by the test (see ``start_broker``)."""

    container: DockerContainer = field(kw_only=True)
    workdir: Path = field(kw_only=True)

    def add_node(self, node_id: str) -> str:
        """Create a node credential inside the running broker (it reloads); return the password."""
        output = self.exec("otto-auth", "add-node", node_id)
        password = next(line.split("=", 1)[1] for line in output.splitlines() if line.startswith("OTTO_MQTT_PASSWORD="))
        self.passwords[node_id] = password
        time.sleep(0.5)  # SIGHUP reload is asynchronous
        return password

    def add_homeassistant(self) -> str:
        """Create Home Assistant's credential inside the running broker (it reloads); return the password."""
        output = self.exec("otto-auth", "add-homeassistant")
        password = next(line.split()[-1] for line in output.splitlines() if line.startswith("Password:"))
        self.passwords["homeassistant"] = password
        time.sleep(0.5)  # SIGHUP reload is asynchronous
        return password

    def exec(self, *command: str) -> str:
        wrapped = self.container.get_wrapped_container()
        code, output = wrapped.exec_run(list(command), user=MOSQUITTO_UID)  # stream=False: one bytes value
        assert isinstance(output, bytes)
        text = output.decode(errors="replace")
        assert code == 0, text
        return text

    def stop(self) -> None:
        self.container.get_wrapped_container().stop(timeout=5)

    def start(self) -> None:
        self.container.get_wrapped_container().start()
        wait_until_listening(self.host, self.port)

    def logs(self) -> str:
        wrapped = self.container.get_wrapped_container()
        return bytes(wrapped.logs()).decode(errors="replace")


def wait_until_listening(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port}")


def add_wildcard_publisher(workdir: Path, user: str, password: str) -> None:
    """A benchmark-only credential allowed to write every node's topics (simulated fleets)."""
    subprocess.run(
        ["docker", "run", "--rm", "-u", MOSQUITTO_UID, "-v", f"{workdir / 'auth'}:/mosquitto/auth",
         BROKER_IMAGE, "mosquitto_passwd", "-b", "/mosquitto/auth/passwd", user, password],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    with (workdir / "auth" / "acl").open("a") as acl:
        acl.write(f"\nuser {user}\ntopic write otto/nodes/#\n")


@contextlib.contextmanager
def start_broker(workdir: Path, nodes: list[str], wildcard_publisher: str | None = None) -> Iterator[Broker]:
    """Create credentials with otto-auth, then run the broker with the shipped configuration."""
    for sub in ("auth", "secrets", "data"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
        shutil.chown(workdir / sub, 1883, 1883)
    run_otto_auth(workdir, "init", *nodes)
    passwords = {
        path.name.removesuffix(".password"): path.read_text().strip()
        for path in (workdir / "secrets").glob("*.password")
    }
    if wildcard_publisher is not None:
        passwords[wildcard_publisher] = "bench-" + passwords["controlplane"][:20]
        add_wildcard_publisher(workdir, wildcard_publisher, passwords[wildcard_publisher])
    port = free_port()
    container = (
        DockerContainer(BROKER_IMAGE)
        .with_bind_ports(1883, port)
        .with_volume_mapping(str(REPO / "mosquitto" / "mosquitto.conf"), "/mosquitto/config/mosquitto.conf", "ro")
        .with_volume_mapping(str(REPO / "mosquitto" / "otto-auth"), "/usr/local/bin/otto-auth", "ro")
        .with_volume_mapping(str(workdir / "auth"), "/mosquitto/auth", "rw")
        .with_volume_mapping(str(workdir / "data"), "/mosquitto/data", "rw")
        .with_kwargs(user=MOSQUITTO_UID)
        .waiting_for(LogMessageWaitStrategy(re.compile(r"mosquitto version \S+ running")))
    )
    container.start()
    try:
        wait_until_listening("127.0.0.1", port)
        yield Broker(port=port, passwords=passwords, container=container, workdir=workdir)
    finally:
        container.stop()
