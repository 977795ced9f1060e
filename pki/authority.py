"""Certificates and revocation lists as pure functions of keys, names and a clock (``cryptography``).

Keys are ECDSA P-256: small enough for a Pi Zero's handshake, accepted by every TLS 1.2 client we
meet (paho, Mosquitto's own tools, Home Assistant, openHAB). Nothing here touches a file.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_LIFETIME = timedelta(days=3650)
SERVER_LIFETIME = timedelta(days=825)
CLIENT_LIFETIME = timedelta(days=730)
#: Backdating covers a node whose clock runs a little behind the control plane's.
BACKDATE = timedelta(hours=1)

PrivateKey = ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and the private key it certifies."""

    key: PrivateKey
    cert: x509.Certificate

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def cert_pem(self) -> bytes:
        return cert_pem(self.cert)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "otto-metrics"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, certificates: bool) -> x509.KeyUsage:
    """A CA signs certificates and CRLs; an end entity signs handshakes and agrees keys (ECDHE)."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not certificates,
        key_cert_sign=certificates,
        crl_sign=certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, key: PrivateKey, now: datetime, lifetime: timedelta
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def make_ca(now: datetime, common_name: str = "otto-metrics private CA", lifetime: timedelta = CA_LIFETIME) -> Issued:
    """A self-signed CA that may sign end-entity certificates only (path length 0)."""
    key = new_key()
    name = _name(common_name)
    cert = (
        _builder(name, name, key, now, lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(certificates=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Issued(key, cert)


def _end_entity(
    ca: Issued, common_name: str, sans: Sequence[x509.GeneralName], usage: x509.ObjectIdentifier, now: datetime,
    lifetime: timedelta,
) -> Issued:  # fmt: skip
    key = new_key()
    builder = (
        _builder(_name(common_name), ca.cert.subject, key, now, lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return Issued(key, builder.sign(ca.key, hashes.SHA256()))


def general_names(names: Iterable[str]) -> list[x509.GeneralName]:
    """Subject alternative names: IP addresses as such, everything else as DNS names (order kept, no repeats)."""
    out: list[x509.GeneralName] = []
    for name in dict.fromkeys(n.strip().lower() for n in names if n.strip()):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def make_server_cert(ca: Issued, names: Sequence[str], now: datetime, lifetime: timedelta = SERVER_LIFETIME) -> Issued:
    """The broker's certificate, valid for every name in ``names`` (DNS names and IP addresses)."""
    sans = general_names(names)
    if not sans:
        raise ValueError("a server certificate needs at least one name")
    return _end_entity(ca, names[0], sans, ExtendedKeyUsageOID.SERVER_AUTH, now, lifetime)


def make_client_cert(ca: Issued, node_id: str, now: datetime, lifetime: timedelta = CLIENT_LIFETIME) -> Issued:
    """A node's client certificate: its common name is the node id, which the broker takes as the MQTT user."""
    return _end_entity(ca, node_id, [], ExtendedKeyUsageOID.CLIENT_AUTH, now, lifetime)


def make_crl(ca: Issued, revoked: Iterable[tuple[int, datetime]], now: datetime) -> x509.CertificateRevocationList:
    """The revocation list of ``revoked`` (serial, when). Valid as long as the CA: OpenSSL refuses every
    client certificate once a CRL's next update has passed, and nothing here republishes it on a timer."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - BACKDATE)
        .next_update(ca.cert.not_valid_after_utc)
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(ca.key, hashes.SHA256())


def names_of(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses a certificate is valid for."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*sans.get_values_for_type(x509.DNSName), *(str(ip) for ip in sans.get_values_for_type(x509.IPAddress))]


def common_name(cert: x509.Certificate) -> str:
    attributes = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attributes[0].value) if attributes else ""


def days_left(cert: x509.Certificate, now: datetime) -> float:
    """Days until ``cert`` expires (negative once it has)."""
    return (cert.not_valid_after_utc - now).total_seconds() / 86400


def matches_key(cert: x509.Certificate, key: object) -> bool:
    """Whether ``key`` is the private key of ``cert``."""
    public = getattr(key, "public_key", None)
    if public is None:
        return False
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return bool(public().public_bytes(*fmt) == cert.public_key().public_bytes(*fmt))
