"""A real Mosquitto for tests: the shipped mosquitto.conf, otto-auth credentials and otto-pki certificates."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

from pki.__main__ import Authority, PkiSettings

REPO = Path(__file__).resolve().parents[2]
BROKER_IMAGE = "eclipse-mosquitto:2"
MOSQUITTO_UID = "1883:1883"
MOSQUITTO_GID = 1883
#: The names the test broker's certificate carries, as OTTO_PUBLIC_HOST would give them.
PUBLIC_HOST = "broker.otto.test"
#: What Mosquitto logs once its listeners are open.
RUNNING = " running"


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
    """Where a broker listens (plain ``port``; TLS ports when known), and the passwords the test knows."""

    port: int
    passwords: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    tls_port: int | None = None
    mtls_port: int | None = None
    ca_file: Path | None = None
    tls: ssl.SSLContext | None = None  # test clients connect to ``port`` over TLS with this (a TLS-only broker)

    def password(self, user: str) -> str:
        return self.passwords[user]

    def tls_settings(self, *, mutual: bool = False) -> dict[str, str]:
        """OTTO_* settings (lower case, as AgentProcess takes them) for the TLS listener, verifying the broker."""
        port = self.mtls_port if mutual else self.tls_port
        assert port is not None, "this broker has no TLS listener"
        assert self.ca_file is not None
        return {"mqtt_tls": "true", "mqtt_port": str(port), "mqtt_ca_file": str(self.ca_file)}


@dataclass
class Broker(BrokerAddress):
    """A broker container started by the test (see ``start_broker``)."""

    container: DockerContainer = field(kw_only=True)
    workdir: Path = field(kw_only=True)

    def add_node(self, node_id: str) -> str:
        """Create a node credential inside the running broker (it reloads); return the password."""
        password = bundle_password(self.exec("otto-auth", "add-node", node_id))
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

    @property
    def tls_dir(self) -> Path:
        return self.workdir / "tls"

    def pki(self, now: datetime | None = None, public_host: str = PUBLIC_HOST) -> Authority:
        """The authority behind this broker's certificates (the otto-pki code), on the test's files."""
        return make_authority(self.workdir, now, public_host)

    def pki_env(self) -> dict[str, str]:
        """The OTTO_* variables of the `pki` Compose service, pointing at this broker's files."""
        settings = self.pki().settings
        return {
            "OTTO_PUBLIC_HOST": settings.public_host,
            "OTTO_PKI_CA_DIR": str(settings.pki_ca_dir),
            "OTTO_PKI_TLS_DIR": str(settings.pki_tls_dir),
            "OTTO_PKI_PROVIDED_DIR": str(settings.pki_provided_dir),
            "OTTO_PKI_PASSWD": str(settings.pki_passwd),
        }

    def reload(self) -> None:
        """SIGHUP, as `docker compose kill -s HUP mosquitto`: rereads the ACL and the server certificate."""
        self.container.get_wrapped_container().kill(signal="SIGHUP")
        time.sleep(0.5)

    def restart(self, timeout: float = 30.0) -> None:
        """Restart and wait for the broker itself: Docker's port proxy accepts connections before it runs."""
        started = self.logs().count(RUNNING)
        self.container.get_wrapped_container().restart(timeout=5)
        deadline = time.monotonic() + timeout
        while self.logs().count(RUNNING) <= started:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the broker did not come back:\n{self.logs()[-2000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.container.get_wrapped_container().stop(timeout=5)

    def start(self) -> None:
        self.container.get_wrapped_container().start()
        wait_until_listening(self.host, self.port)

    def logs(self) -> str:
        wrapped = self.container.get_wrapped_container()
        return bytes(wrapped.logs()).decode(errors="replace")


def bundle_password(bundle: str) -> str:
    """The password in the shell bundle `otto-auth add-node` prints."""
    match = re.search(r"^printf '%s\\n' '([^']+)' > otto/mqtt.password$", bundle, re.M)
    assert match, bundle
    return match.group(1)


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


def make_authority(workdir: Path, now: datetime | None = None, public_host: str = PUBLIC_HOST) -> Authority:
    settings = PkiSettings(
        public_host=public_host,
        pki_ca_dir=workdir / "ca",
        pki_tls_dir=workdir / "tls",
        pki_provided_dir=workdir / "provided",
        pki_passwd=workdir / "auth" / "passwd",
    )
    return Authority(settings, now or datetime.now(UTC))


def share_with_broker(tls_dir: Path) -> None:
    """What running as the broker's user (1883) gives pki-init in Compose: the broker may read its key."""
    for path in tls_dir.iterdir():
        shutil.chown(path, MOSQUITTO_GID, MOSQUITTO_GID)


def init_pki(workdir: Path) -> None:
    """`otto-pki init`, as pki-init runs it before the broker starts."""
    for sub in ("ca", "tls", "provided"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    authority = make_authority(workdir)
    ca = authority.ca(create=True)
    authority.setup_server(ca, force=False)
    authority.write_crl(ca)
    share_with_broker(workdir / "tls")


@contextlib.contextmanager
def start_broker(workdir: Path, nodes: list[str], wildcard_publisher: str | None = None) -> Iterator[Broker]:
    """Create credentials with otto-auth and certificates with otto-pki, then run the shipped configuration.

    The plain listener (1883) is what most tests use; ``tls_port`` and ``mtls_port`` are the
    broker's 8883 and 8884.
    """
    for sub in ("auth", "secrets", "data"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
        shutil.chown(workdir / sub, 1883, 1883)
    init_pki(workdir)
    run_otto_auth(workdir, "init", *nodes)
    passwords = {
        path.name.removesuffix(".password"): path.read_text().strip()
        for path in (workdir / "secrets").glob("*.password")
    }
    if wildcard_publisher is not None:
        passwords[wildcard_publisher] = "bench-" + passwords["controlplane"][:20]
        add_wildcard_publisher(workdir, wildcard_publisher, passwords[wildcard_publisher])
    port, tls_port, mtls_port = free_port(), free_port(), free_port()
    container = (
        DockerContainer(BROKER_IMAGE)
        .with_bind_ports(1883, port)
        .with_bind_ports(8883, tls_port)
        .with_bind_ports(8884, mtls_port)
        .with_volume_mapping(str(REPO / "mosquitto" / "mosquitto.conf"), "/mosquitto/config/mosquitto.conf", "ro")
        .with_volume_mapping(str(workdir / "tls"), "/mosquitto/tls", "ro")
        .with_volume_mapping(str(REPO / "mosquitto" / "otto-auth"), "/usr/local/bin/otto-auth", "ro")
        .with_volume_mapping(str(workdir / "auth"), "/mosquitto/auth", "rw")
        .with_volume_mapping(str(workdir / "data"), "/mosquitto/data", "rw")
        .with_kwargs(user=MOSQUITTO_UID)
        .waiting_for(LogMessageWaitStrategy(re.compile(r"mosquitto version \S+ running")))
    )
    container.start()
    try:
        for listening in (port, tls_port, mtls_port):
            wait_until_listening("127.0.0.1", listening)
        yield Broker(
            port=port,
            passwords=passwords,
            tls_port=tls_port,
            mtls_port=mtls_port,
            ca_file=workdir / "tls" / "nodes-ca.crt",
            container=container,
            workdir=workdir,
        )
    finally:
        container.stop()
