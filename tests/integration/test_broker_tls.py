"""The broker's TLS listeners, with real handshakes: who gets in, who is refused, and the ACLs under TLS.

The test broker runs the shipped mosquitto.conf with a CA, server certificate and CRL made by the
otto-pki code (pki.authority), as `docker compose up` makes them.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pki import authority
from pki.__main__ import main as pki_main
from tests.support.agent_process import AgentProcess
from tests.support.broker import Broker, share_with_broker
from tests.support.mqtt import Recorder, connect, publish_once
from tests.support.subscriber_process import SubscriberProcess

pytestmark = [pytest.mark.docker]

NOT_AUTHORIZED = 0x87
CONNECT_ANONYMOUS = bytes.fromhex("101000044d5154540502003c00000003") + b"abc"  # MQTT 5 CONNECT, client id "abc"


def client_context(ca_file: Path | None, *, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    """What the agent builds (common.mqtt_settings): TLS 1.2+, the given CA, host name checked."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        context.load_cert_chain(*cert)
    return context


def save_client(tmp_path: Path, issued: authority.Issued, name: str) -> tuple[Path, Path]:
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert.write_bytes(issued.cert_pem())
    key.write_bytes(issued.key_pem())
    return cert, key


def host_address() -> str:
    """An address of this machine that is not in the broker's certificate (a wrong host name)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # TEST-NET: nothing is sent
        return str(probe.getsockname()[0])


def test_the_right_ca_and_host_name_connect_and_acls_hold(broker: Broker) -> None:
    tls = client_context(broker.ca_file)
    control = Recorder(broker)
    assert publish_once(broker, "node-a", "otto/nodes/node-a/status", b"{}", tls=tls, port=broker.tls_port).value == 0
    forged = publish_once(broker, "node-a", "otto/nodes/node-b/status", b"{}", tls=tls, port=broker.tls_port)
    assert forged.value == NOT_AUTHORIZED
    control.wait_for(lambda m: [x.topic for x in m] == ["otto/nodes/node-a/status"])
    with pytest.raises(ConnectionRefusedError):
        connect(broker, "node-a", password="guess", tls=tls, port=broker.tls_port)
    with pytest.raises(ConnectionRefusedError):
        connect(broker, None, tls=tls, port=broker.tls_port)
    time.sleep(0.3)
    assert [x.topic for x in control.messages] == ["otto/nodes/node-a/status"]
    control.close()


def test_a_wrong_ca_a_wrong_host_name_and_an_expired_certificate_are_refused(broker: Broker, tmp_path: Path) -> None:
    stranger = authority.make_ca(datetime.now(UTC), "someone else's CA")
    (tmp_path / "stranger.crt").write_bytes(stranger.cert_pem())
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer certificate"):
        connect(broker, "node-a", tls=client_context(tmp_path / "stranger.crt"), port=broker.tls_port)
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer certificate"):
        connect(broker, "node-a", tls=client_context(None), port=broker.tls_port)  # the system's CAs
    wrong_host = Broker(**{**broker.__dict__, "host": host_address()})
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        connect(wrong_host, "node-a", tls=client_context(broker.ca_file), port=broker.tls_port)

    # The broker's certificate three years old (expired), served after a reload, then renewed.
    old = broker.pki(now=datetime.now(UTC) - timedelta(days=1100))
    old.setup_server(old.ca(), force=True)
    share_with_broker(broker.tls_dir)
    broker.reload()
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate has expired"):
        connect(broker, "node-a", tls=client_context(broker.ca_file), port=broker.tls_port)
    renewed = broker.pki()
    renewed.setup_server(renewed.ca(), force=True)  # `otto-pki renew-server`, then SIGHUP
    share_with_broker(broker.tls_dir)
    broker.reload()
    connect(broker, "node-a", tls=client_context(broker.ca_file), port=broker.tls_port).disconnect()


def test_plaintext_to_the_tls_port_gets_no_answer(broker: Broker) -> None:
    assert broker.tls_port is not None
    with socket.create_connection((broker.host, broker.tls_port), timeout=5) as raw:
        raw.sendall(CONNECT_ANONYMOUS)
        raw.settimeout(5)
        try:
            answer = raw.recv(64)
        except ConnectionResetError:
            answer = b""
    assert answer[:1] != b"\x20", "a CONNACK over plaintext on the TLS port"  # closed, or a TLS alert


def test_agent_and_subscriber_talk_over_tls_and_insecure_mode_warns(broker: Broker, tmp_path: Path) -> None:
    watched = f"127.0.0.1:{broker.tls_port}"
    subscriber = SubscriberProcess(broker, tmp_path, **broker.tls_settings(), broker_tls_address=watched).start()
    agent = AgentProcess(broker, "node-a", tmp_path, **broker.tls_settings())
    # The insecure switch: connects to a name the certificate does not carry, and says so.
    insecure = AgentProcess(
        broker, "node-b", tmp_path, **broker.tls_settings(), mqtt_host=host_address(), mqtt_tls_insecure="true"
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            nodes = {n["node_id"]: n for n in subscriber.get("/api/nodes")}
            if {"node-a", "node-b"} <= nodes.keys() and all(n["status"] == "online" for n in nodes.values()):
                break
            time.sleep(0.5)
        assert {"node-a", "node-b"} <= nodes.keys(), subscriber.logs()[-2000:]
        assert "NOT checked" in insecure.logs()
        assert "NOT checked" not in agent.logs()
        assert "without TLS" not in subscriber.logs()
        # The certificate the broker serves, read by the subscriber: days left on the API and in /metrics.
        served = subscriber.get("/api/broker/certificate")
        assert served["error"] is None
        assert served["days_left"] == pytest.approx(825, abs=0.1)  # as otto-pki issued it
        assert "broker.otto.test" in served["names"]
        assert subscriber.metric("otto_broker_certificate_days_left") == pytest.approx(825, abs=0.1)
    finally:
        for process in (agent, insecure):
            process.stop()
        subscriber.kill()


def test_an_agent_refuses_a_broker_it_cannot_verify(broker: Broker, tmp_path: Path) -> None:
    wrong_host = {**broker.tls_settings(), "mqtt_host": host_address()}
    agent = AgentProcess(broker, "node-a", tmp_path, **wrong_host)
    control = Recorder(broker)
    try:
        time.sleep(4)
        assert agent.process.poll() is None  # it keeps trying, never gives its password to the wrong host
        assert control.on("otto/nodes/node-a/status") == []
        assert "(TLS: IP address mismatch" in agent.logs()  # one line that says why
    finally:
        agent.stop()
        control.close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_the_protocol_floor_is_tls_1_2(broker: Broker) -> None:
    old = ssl.create_default_context(cafile=broker.ca_file)
    old.minimum_version = ssl.TLSVersion.TLSv1  # offers TLS 1.0 and 1.1 only
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # this client's OpenSSL would otherwise refuse them itself
    with pytest.raises(ssl.SSLError, match="TLSV1_ALERT_PROTOCOL_VERSION"):  # the broker's alert
        connect(broker, "node-a", tls=old, port=broker.tls_port)
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        exact = client_context(broker.ca_file)
        exact.minimum_version = exact.maximum_version = version
        client = connect(broker, "node-a", tls=exact, port=broker.tls_port)
        sock = client.socket()
        assert isinstance(sock, ssl.SSLSocket)
        assert sock.version() == {"TLSv1.2": "TLSv1.2", "TLSv1.3": "TLSv1.3"}[version.name.replace("_", ".")]
        client.disconnect()


def run_pki(broker: Broker, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """`otto-pki ARGS` on the broker's files, as `docker compose run --rm pki ARGS`; its standard output."""
    for name, value in broker.pki_env().items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert pki_main(list(args)) == 0
    share_with_broker(broker.tls_dir)
    return capsys.readouterr().out


def test_client_certificates_log_in_as_their_node_and_revoked_ones_are_refused(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    script = run_pki(broker, monkeypatch, capsys, "issue-client", "node-a")
    pi = tmp_path / "pi"
    pi.mkdir()
    (pi / "bundle.sh").write_text(script)
    subprocess.run(["sh", "bundle.sh"], cwd=pi, check=True, timeout=10)  # what the user runs on the Pi
    env = dict(line.split("=", 1) for line in (pi / ".env").read_text().splitlines())
    assert (env["OTTO_MQTT_PORT"], env["OTTO_MQTT_USERNAME"], env["OTTO_MQTT_PASSWORD_FILE"]) == ("8884", "", "")
    assert oct((pi / "otto" / "client.key").stat().st_mode & 0o777) == "0o600"
    good = (pi / "otto" / "client.crt", pi / "otto" / "client.key")
    tls = client_context(pi / "otto" / "ca.crt", cert=good)

    control = Recorder(broker)
    # No user name or password: the certificate's common name is the user, with node-a's ACL.
    assert publish_once(broker, None, "otto/nodes/node-a/status", b"{}", tls=tls, port=broker.mtls_port).value == 0
    denied = publish_once(broker, None, "otto/nodes/node-b/status", b"{}", tls=tls, port=broker.mtls_port)
    assert denied.value == NOT_AUTHORIZED
    control.wait_for(lambda m: [x.topic for x in m] == ["otto/nodes/node-a/status"])
    stranger = authority.make_ca(datetime.now(UTC), "someone else's CA")
    forged = save_client(tmp_path, authority.make_client_cert(stranger, "node-a", datetime.now(UTC)), "forged")
    for refused in (client_context(broker.ca_file), client_context(broker.ca_file, cert=forged)):
        with pytest.raises((ssl.SSLError, OSError, TimeoutError)):  # no certificate; another CA's
            connect(broker, None, tls=refused, port=broker.mtls_port)

    assert "node-a" in run_pki(broker, monkeypatch, capsys, "list-clients")
    run_pki(broker, monkeypatch, capsys, "revoke-client", "node-a")
    assert "revoked" in run_pki(broker, monkeypatch, capsys, "list-clients")
    broker.restart()  # Mosquitto 2.0 reads its CRL at start only
    with pytest.raises((ssl.SSLError, OSError, TimeoutError)):
        connect(broker, None, tls=tls, port=broker.mtls_port)
    fresh = save_client(tmp_path, authority.make_client_cert(broker.pki().ca(), "node-a", datetime.now(UTC)), "new")
    connect(broker, None, tls=client_context(broker.ca_file, cert=fresh), port=broker.mtls_port).disconnect()
    control.close()
