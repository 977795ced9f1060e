"""Where the authority's files live, written atomically with the right modes.

Two directories, two volumes: ``ca_dir`` holds the CA's private key and the register of issued
client certificates and is mounted only into the one-shot PKI commands; ``tls_dir`` holds what the
broker reads (its certificate and key, the CA certificate, the revocation list) and what
``otto-auth add-node`` hands to a node (``nodes-ca.crt``). Private keys are 0600: in Compose
otto-pki runs as the broker's user, so the broker reads its key and the local services (which
share the broker's group to read their passwords) do not.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pki.authority import Issued, PrivateKey, cert_pem


@dataclass
class ClientRecord:
    """One issued client certificate (its key was printed once and never stored)."""

    node_id: str
    serial: int
    not_after: str
    revoked_at: str | None = None


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` atomically: a reader (the broker, a restart) never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@dataclass(frozen=True)
class PkiStore:
    ca_dir: Path
    tls_dir: Path

    # -- the CA (its own volume) ----------------------------------------------------------------------

    @property
    def ca_key_path(self) -> Path:
        return self.ca_dir / "ca.key"

    @property
    def ca_cert_path(self) -> Path:
        return self.ca_dir / "ca.crt"

    def load_ca(self) -> Issued | None:
        if not self.ca_key_path.exists():
            return None
        key = as_key(serialization.load_pem_private_key(self.ca_key_path.read_bytes(), password=None))
        return Issued(key, x509.load_pem_x509_certificate(self.ca_cert_path.read_bytes()))

    def save_ca(self, ca: Issued) -> None:
        write_file(self.ca_cert_path, ca.cert_pem(), 0o644)
        write_file(self.ca_key_path, ca.key_pem(), 0o600)

    def clients(self) -> list[ClientRecord]:
        path = self.ca_dir / "clients.json"
        if not path.exists():
            return []
        return [ClientRecord(**entry) for entry in json.loads(path.read_text())]

    def save_clients(self, records: list[ClientRecord]) -> None:
        data = json.dumps([asdict(r) for r in records], indent=1).encode()
        write_file(self.ca_dir / "clients.json", data, 0o600)

    # -- what the broker and the nodes read ---------------------------------------------------------

    @property
    def server_cert_path(self) -> Path:
        return self.tls_dir / "server.crt"

    @property
    def server_key_path(self) -> Path:
        return self.tls_dir / "server.key"

    @property
    def nodes_ca_path(self) -> Path:
        return self.tls_dir / "nodes-ca.crt"

    def server_cert(self) -> x509.Certificate | None:
        if not self.server_cert_path.exists():
            return None
        return x509.load_pem_x509_certificates(self.server_cert_path.read_bytes())[0]

    def save_server(self, chain_pem: bytes, key_pem: bytes, source: str) -> None:
        # otto-pki runs as the broker's user (1883) in Compose: the key is readable by it alone.
        write_file(self.server_key_path, key_pem, 0o600)
        write_file(self.server_cert_path, chain_pem, 0o644)
        write_file(self.tls_dir / "server.source", source.encode() + b"\n", 0o644)

    def server_source(self) -> str:
        path = self.tls_dir / "server.source"
        return path.read_text().strip() if path.exists() else ""

    def publish_ca(self, ca: Issued, nodes_trust_it: bool) -> None:
        write_file(self.tls_dir / "ca.crt", ca.cert_pem(), 0o644)
        if nodes_trust_it:
            write_file(self.nodes_ca_path, ca.cert_pem(), 0o644)
        else:
            self.nodes_ca_path.unlink(missing_ok=True)

    def save_crl(self, crl: x509.CertificateRevocationList) -> None:
        write_file(self.tls_dir / "crl.pem", crl.public_bytes(serialization.Encoding.PEM), 0o644)


def as_key(key: object) -> PrivateKey:
    """``key`` as the EC key type the authority signs with (ValueError otherwise)."""
    if not isinstance(key, PrivateKey):
        raise ValueError("the CA key is not an EC private key")
    return key


def iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


__all__ = ["ClientRecord", "PkiStore", "as_key", "cert_pem", "iso", "write_file"]
