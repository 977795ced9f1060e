"""otto-pki on files in a temporary directory: what `docker compose up` (pki-init) and its commands leave."""

from __future__ import annotations

import ipaddress
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from pki import authority
from pki.__main__ import Authority, PkiSettings, broker_names, main
from pki.store import ClientRecord

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def make(tmp_path: Path, public_host: str = "pi-hub.lan, 192.168.1.10", now: datetime = NOW) -> Authority:
    for sub in ("ca", "tls", "provided"):
        (tmp_path / sub).mkdir(exist_ok=True)
    settings = PkiSettings(
        public_host=public_host,
        pki_ca_dir=tmp_path / "ca",
        pki_tls_dir=tmp_path / "tls",
        pki_provided_dir=tmp_path / "provided",
        pki_passwd=tmp_path / "passwd",
    )
    return Authority(settings, now)


def init(auth: Authority) -> None:
    ca = auth.ca(create=True)
    auth.setup_server(ca, force=False)
    auth.write_crl(ca)


def server(auth: Authority) -> x509.Certificate:
    cert = auth.store.server_cert()
    assert cert is not None
    return cert


def test_init_makes_a_ca_a_server_certificate_for_every_name_and_a_crl(tmp_path: Path) -> None:
    auth = make(tmp_path)
    init(auth)
    ca = auth.ca()
    cert = server(auth)
    cert.verify_directly_issued_by(ca.cert)
    assert authority.names_of(cert) == ["pi-hub.lan", "mosquitto", "localhost", "192.168.1.10", "127.0.0.1"]
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("192.168.1.10") in sans.get_values_for_type(x509.IPAddress)  # an IP SAN, not DNS
    constraints = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert (constraints.ca, constraints.path_length) == (True, 0)
    assert authority.days_left(ca.cert, NOW) == pytest.approx(3650, abs=0.1)
    assert authority.days_left(cert, NOW) == pytest.approx(825, abs=0.1)
    modes = {p.name: p.stat().st_mode & 0o777 for p in [*(tmp_path / "ca").iterdir(), *(tmp_path / "tls").iterdir()]}
    assert modes["ca.key"] == 0o600
    assert modes["server.key"] == 0o600  # the broker's user alone (otto-pki runs as it)
    assert (tmp_path / "tls" / "nodes-ca.crt").read_bytes() == ca.cert_pem()
    assert not (tmp_path / "tls" / "ca.key").exists()  # the CA key stays in its own volume
    crl = x509.load_pem_x509_crl((tmp_path / "tls" / "crl.pem").read_bytes())
    assert crl.is_signature_valid(ca.key.public_key())
    assert crl.next_update_utc == ca.cert.not_valid_after_utc  # never lapses before the CA


def test_init_again_keeps_everything_until_a_name_changes_or_expiry_nears(tmp_path: Path) -> None:
    auth = make(tmp_path)
    init(auth)
    first = server(auth).serial_number
    ca_serial = auth.ca().cert.serial_number
    init(make(tmp_path, now=NOW + timedelta(days=100)))
    assert server(auth).serial_number == first
    init(make(tmp_path, public_host="pi-hub.lan, 192.168.1.11"))
    renamed = server(auth)
    assert renamed.serial_number != first
    assert "192.168.1.11" in authority.names_of(renamed)
    init(make(tmp_path, public_host="pi-hub.lan, 192.168.1.11", now=NOW + timedelta(days=800)))  # 25 days left
    assert server(auth).serial_number != renamed.serial_number
    assert auth.ca().cert.serial_number == ca_serial


def test_a_provided_certificate_is_served_and_nodes_use_their_system_cas(tmp_path: Path) -> None:
    auth = make(tmp_path)
    init(auth)
    public_ca = authority.make_ca(NOW, "a public CA")
    theirs = authority.make_server_cert(public_ca, ["mqtt.example.org"], NOW, timedelta(days=90))
    (tmp_path / "provided" / "fullchain.pem").write_bytes(theirs.cert_pem() + public_ca.cert_pem())
    (tmp_path / "provided" / "privkey.pem").write_bytes(theirs.key_pem())
    init(make(tmp_path))
    assert server(auth).serial_number == theirs.cert.serial_number
    assert auth.store.server_source() == "provided"
    assert not (tmp_path / "tls" / "nodes-ca.crt").exists()  # add-node prints no CA then
    assert (tmp_path / "tls" / "ca.crt").read_bytes() == auth.ca().cert_pem()  # still verifies client certificates

    other = authority.make_server_cert(public_ca, ["mqtt.example.org"], NOW)
    (tmp_path / "provided" / "privkey.pem").write_bytes(other.key_pem())
    with pytest.raises(SystemExit) as exit_:
        init(make(tmp_path))
    assert exit_.value.code == 2
    (tmp_path / "provided" / "fullchain.pem").unlink()
    init(make(tmp_path))  # back to its own certificate, trusted through nodes-ca.crt
    assert server(auth).issuer == auth.ca().cert.subject
    assert (tmp_path / "tls" / "nodes-ca.crt").exists()


def test_revoked_serials_are_in_the_crl_and_only_they(tmp_path: Path) -> None:
    auth = make(tmp_path)
    init(auth)
    ca = auth.ca()
    kept, revoked = (authority.make_client_cert(ca, "pi-1", NOW) for _ in range(2))
    assert authority.common_name(kept.cert) == "pi-1"
    auth.store.save_clients(
        [
            ClientRecord("pi-1", kept.cert.serial_number, "2028-11-28T12:00:00+00:00"),
            ClientRecord("pi-1", revoked.cert.serial_number, "2028-11-28T12:00:00+00:00", "2026-11-29T12:00:00+00:00"),
        ]
    )
    auth.write_crl(ca)
    crl = x509.load_pem_x509_crl((tmp_path / "tls" / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(revoked.cert.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(kept.cert.serial_number) is None


@pytest.mark.parametrize("given", ["a b;rm -rf /", "bad_name!", "x" * 300])
def test_hostile_public_host_values_are_refused(given: str) -> None:
    with pytest.raises(SystemExit):
        broker_names(given)


def test_no_public_host_still_names_the_local_services() -> None:
    assert broker_names("") == ["mosquitto", "localhost", "127.0.0.1"]
    assert broker_names("<control-plane-host>") == ["mosquitto", "localhost", "127.0.0.1"]  # the placeholder


def test_cli_issue_client_needs_a_broker_user_and_prints_a_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    auth = make(tmp_path)
    init(auth)
    for name, value in {
        "OTTO_PKI_CA_DIR": tmp_path / "ca",
        "OTTO_PKI_TLS_DIR": tmp_path / "tls",
        "OTTO_PKI_PASSWD": tmp_path / "passwd",
        "OTTO_PUBLIC_HOST": "pi-hub.lan",
    }.items():
        monkeypatch.setenv(name, str(value))
    (tmp_path / "passwd").write_text("controlplane:$7$x\npi-1:$7$y\n")
    with pytest.raises(SystemExit):
        main(["issue-client", "pi-2"])
    assert "otto-auth add-node pi-2" in capsys.readouterr().err
    assert main(["issue-client", "pi-1"]) == 0
    out = capsys.readouterr().out
    assert out.count("BEGIN CERTIFICATE") == 2
    assert "BEGIN PRIVATE KEY" in out
    assert "OTTO_MQTT_HOST=pi-hub.lan" in out
    assert [r.node_id for r in auth.store.clients()] == ["pi-1"]
    assert "BEGIN PRIVATE KEY" not in "".join(p.read_text() for p in (tmp_path / "ca").iterdir() if p.name != "ca.key")


def test_a_provided_key_it_cannot_read_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    init(make(tmp_path))
    theirs = authority.make_server_cert(authority.make_ca(NOW, "a public CA"), ["mqtt.example.org"], NOW)
    (tmp_path / "provided" / "server.crt").write_bytes(theirs.cert_pem())
    key = tmp_path / "provided" / "server.key"
    if os.geteuid() == 0:  # root reads any mode: a regular file whose read fails instead
        key.symlink_to("/proc/self/mem")
    else:
        key.write_bytes(theirs.key_pem())
        key.chmod(0)
    with pytest.raises(SystemExit):
        init(make(tmp_path))
    err = capsys.readouterr().err
    assert "cannot read server.crt / server.key" in err
    assert "1883" in err
