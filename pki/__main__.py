"""otto-pki: the control plane's certificate authority, run as one-shot commands in the subscriber image.

    otto-pki init                  create the CA, the broker's certificate and the CRL if missing (every start)
    otto-pki status                expiry of the CA, the broker's and the clients' certificates (JSON)
    otto-pki renew-server          issue the broker's certificate again now (then: reload the broker)
    otto-pki ca                    print the CA certificate nodes trust
    otto-pki issue-client NODE     a client certificate for mutual TLS: prints a bundle (sh) for the Pi, once
    otto-pki list-clients          issued client certificates
    otto-pki revoke-client NODE    revoke every certificate of NODE (then: restart the broker)

Settings: OTTO_PUBLIC_HOST (names and addresses of the broker, comma separated), OTTO_PKI_CA_DIR,
OTTO_PKI_TLS_DIR, OTTO_PKI_PROVIDED_DIR (your own certificate: server.crt + server.key, or
Let's Encrypt's fullchain.pem + privkey.pem), OTTO_PKI_PASSWD (the broker's password file).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NoReturn

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import Field

from common.env_settings import EnvSettings
from pki import authority
from pki.store import ClientRecord, PkiStore, iso

PROGRAM = "otto-pki"
#: The broker's own certificate is issued again by ``init`` once it has less than this left.
RENEW_BEFORE = timedelta(days=30)
#: Names every broker certificate carries: the Compose service name and the loopback.
LOCAL_NAMES = ("mosquitto", "localhost", "127.0.0.1")
NODE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?$|^[0-9a-fA-F:.]+$")
PROVIDED_PAIRS = (("server.crt", "server.key"), ("fullchain.pem", "privkey.pem"))


class PkiSettings(EnvSettings):
    """``OTTO_PKI_*`` and ``OTTO_PUBLIC_HOST``."""

    public_host: str = ""
    pki_ca_dir: Path = Path("/var/lib/otto-pki/ca")
    pki_tls_dir: Path = Path("/var/lib/otto-pki/tls")
    pki_provided_dir: Path = Path("/provided")
    pki_passwd: Path = Path("/mosquitto/auth/passwd")
    pki_client_days: int = Field(730, ge=1, le=3650)


def fail(message: str) -> NoReturn:
    print(f"{PROGRAM}: {message}", file=sys.stderr)
    raise SystemExit(2)


def say(message: str) -> None:
    print(f"{PROGRAM}: {message}", file=sys.stderr)


def broker_names(public_host: str) -> list[str]:
    """The names the broker's certificate must carry: OTTO_PUBLIC_HOST's, then the local ones."""
    given = [n for n in re.split(r"[,\s]+", public_host.strip()) if n and not n.startswith("<")]
    for name in given:
        if not HOST_NAME.match(name):
            fail(f"OTTO_PUBLIC_HOST: {name!r} is not a host name or an IP address")
    return list(dict.fromkeys(n.lower() for n in [*given, *LOCAL_NAMES]))


@dataclass
class Authority:
    settings: PkiSettings
    now: datetime

    def __post_init__(self) -> None:
        self.store = PkiStore(self.settings.pki_ca_dir, self.settings.pki_tls_dir)

    def ca(self, create: bool = False) -> authority.Issued:
        ca = self.store.load_ca()
        if ca is None:
            if not create:
                fail(f"no CA in {self.store.ca_dir}: run `otto-pki init` first (docker compose up does)")
            ca = authority.make_ca(self.now)
            self.store.save_ca(ca)
            say(f"created the private CA (valid until {iso(ca.cert.not_valid_after_utc)})")
        return ca

    def provided(self) -> tuple[bytes, bytes] | None:
        folder = self.settings.pki_provided_dir
        for cert_name, key_name in PROVIDED_PAIRS:
            if (folder / cert_name).is_file() and (folder / key_name).is_file():
                try:
                    chain, key = (folder / cert_name).read_bytes(), (folder / key_name).read_bytes()
                except OSError as exc:
                    fail(
                        f"{folder}: cannot read {cert_name} / {key_name} ({exc.strerror}): otto-pki runs as uid "
                        f"1883, e.g. chgrp 1883 {key_name} && chmod 0640 {key_name}"
                    )
                try:
                    leaf = x509.load_pem_x509_certificates(chain)[0]
                    private = serialization.load_pem_private_key(key, password=None)
                except ValueError as exc:
                    fail(f"{folder}: cannot read {cert_name} / {key_name}: {exc}")
                if not authority.matches_key(leaf, private):
                    fail(f"{folder}/{key_name} is not the key of {cert_name}")
                if authority.days_left(leaf, self.now) <= 0:
                    fail(f"{folder}/{cert_name} expired on {iso(leaf.not_valid_after_utc)}")
                return chain, key
        return None

    def issue_server(self, ca: authority.Issued, reason: str) -> None:
        names = broker_names(self.settings.public_host)
        server = authority.make_server_cert(ca, names, self.now)
        self.store.save_server(server.cert_pem(), server.key_pem(), "own")
        say(f"issued the broker's certificate for {', '.join(names)} ({reason}; valid until "
            f"{iso(server.cert.not_valid_after_utc)})")  # fmt: skip

    def server_reason(self, ca: authority.Issued) -> str | None:
        """Why the broker's own certificate must be issued again, or None."""
        current = self.store.server_cert()
        if current is None or self.store.server_source() != "own":
            return "none yet"
        if current.issuer != ca.cert.subject:
            return "another CA"
        if set(authority.names_of(current)) != set(broker_names(self.settings.public_host)):
            return "OTTO_PUBLIC_HOST changed"
        if authority.days_left(current, self.now) < RENEW_BEFORE.days:
            return f"expires within {RENEW_BEFORE.days} days"
        return None

    def write_crl(self, ca: authority.Issued) -> None:
        revoked = [
            (r.serial, datetime.fromisoformat(r.revoked_at)) for r in self.store.clients() if r.revoked_at is not None
        ]
        self.store.save_crl(authority.make_crl(ca, revoked, self.now))

    def setup_server(self, ca: authority.Issued, force: bool) -> None:
        provided = self.provided()
        self.store.publish_ca(ca, nodes_trust_it=provided is None)
        if provided is not None:
            self.store.save_server(*provided, source="provided")
            leaf = self.store.server_cert()
            assert leaf is not None
            say(f"the broker uses the certificate in {self.settings.pki_provided_dir} for "
                f"{', '.join(authority.names_of(leaf))} (valid until {iso(leaf.not_valid_after_utc)})")  # fmt: skip
            return
        reason = "renewed on request" if force else self.server_reason(ca)
        if reason is not None:
            self.issue_server(ca, reason)


def known_users(passwd: Path) -> set[str]:
    if not passwd.exists():
        fail(f"no password file at {passwd}")
    return {line.split(":", 1)[0] for line in passwd.read_text().splitlines() if ":" in line}


def bundle(node_id: str, issued: authority.Issued, ca_pem: bytes, host: str) -> str:
    """A POSIX shell script that writes the node's certificate files and its .env lines, on the Pi."""
    parts = [
        f"# otto-metrics client certificate for node {node_id}, serial {issued.cert.serial_number:x},",
        f"# valid until {iso(issued.cert.not_valid_after_utc)}. Keep it secret; run it once on the Pi, in the",
        "# directory of compose.rpi.yaml: it writes otto/ (read by the agent) and adds the lines to .env.",
        "set -eu",
        "umask 077",
        "mkdir -p otto",
    ]
    for name, pem in (("client.crt", issued.cert_pem()), ("client.key", issued.key_pem()), ("ca.crt", ca_pem)):
        parts += [f"cat > otto/{name} <<'OTTO_PEM'", pem.decode().strip(), "OTTO_PEM"]
    parts += [
        "cat >> .env <<'OTTO_ENV'",
        f"OTTO_NODE_ID={node_id}",
        f"OTTO_MQTT_HOST={host}",
        "OTTO_MQTT_PORT=8884",
        "OTTO_MQTT_CA_FILE=/run/otto/ca.crt",
        "OTTO_MQTT_CERT_FILE=/run/otto/client.crt",
        "OTTO_MQTT_KEY_FILE=/run/otto/client.key",
        "OTTO_MQTT_USERNAME=",
        "OTTO_MQTT_PASSWORD_FILE=",
        "OTTO_ENV",
    ]
    return "\n".join(parts) + "\n"


def status(auth: Authority) -> dict[str, object]:
    ca = auth.ca()
    server = auth.store.server_cert()

    def describe(cert: x509.Certificate) -> dict[str, object]:
        return {
            "subject": authority.common_name(cert),
            "not_after": iso(cert.not_valid_after_utc),
            "days_left": round(authority.days_left(cert, auth.now), 1),
        }

    return {
        "ca": describe(ca.cert),
        "server": None
        if server is None
        else describe(server) | {"names": authority.names_of(server), "source": auth.store.server_source()},
        "clients": [r.__dict__ for r in auth.store.clients()],
    }


def cmd_init(auth: Authority, _: argparse.Namespace) -> None:
    ca = auth.ca(create=True)
    auth.setup_server(ca, force=False)
    if not (auth.store.tls_dir / "crl.pem").exists():
        auth.write_crl(ca)


def cmd_renew_server(auth: Authority, _: argparse.Namespace) -> None:
    auth.setup_server(auth.ca(), force=True)
    say("reload the broker to serve it: docker compose kill -s HUP mosquitto")


def cmd_status(auth: Authority, _: argparse.Namespace) -> None:
    print(json.dumps(status(auth), indent=1))


def cmd_ca(auth: Authority, _: argparse.Namespace) -> None:
    sys.stdout.write(auth.ca().cert_pem().decode())


def cmd_list_clients(auth: Authority, _: argparse.Namespace) -> None:
    for r in auth.store.clients():
        state = f"revoked {r.revoked_at}" if r.revoked_at else "valid"
        print(f"{r.node_id}\t{r.serial:x}\tuntil {r.not_after}\t{state}")


def cmd_issue_client(auth: Authority, args: argparse.Namespace) -> None:
    node_id = args.node_id
    if not NODE_ID.match(node_id):
        fail(f"invalid node id {node_id!r} (letters, digits, - _ . only)")
    if node_id not in known_users(auth.settings.pki_passwd):
        fail(f"no node {node_id!r} on the broker: `otto-auth add-node {node_id}` first (its ACL)")
    ca = auth.ca()
    issued = authority.make_client_cert(ca, node_id, auth.now, timedelta(days=auth.settings.pki_client_days))
    records = auth.store.clients()
    records.append(ClientRecord(node_id, issued.cert.serial_number, iso(issued.cert.not_valid_after_utc)))
    auth.store.save_clients(records)
    public = [n for n in broker_names(auth.settings.public_host) if n not in LOCAL_NAMES]
    sys.stdout.write(bundle(node_id, issued, ca.cert_pem(), public[0] if public else "<control-plane-host>"))
    say(f"issued a client certificate for {node_id} (serial {issued.cert.serial_number:x}); its key is not kept")


def cmd_revoke_client(auth: Authority, args: argparse.Namespace) -> None:
    records = auth.store.clients()
    hits = [r for r in records if r.node_id == args.node_id and r.revoked_at is None]
    if not hits:
        fail(f"no valid client certificate for {args.node_id!r}")
    for record in hits:
        record.revoked_at = iso(auth.now)
    auth.store.save_clients(records)
    auth.write_crl(auth.ca())
    say(f"revoked {len(hits)} certificate(s) of {args.node_id}; Mosquitto reads its revocation list at start "
        "only: docker compose restart mosquitto")  # fmt: skip


COMMANDS = {
    "init": cmd_init,
    "status": cmd_status,
    "renew-server": cmd_renew_server,
    "ca": cmd_ca,
    "list-clients": cmd_list_clients,
    "issue-client": cmd_issue_client,
    "revoke-client": cmd_revoke_client,
}


def main(argv: Sequence[str] | None = None, now: datetime | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=(__doc__ or "").split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        command = commands.add_parser(name)
        if name.endswith("-client") and name != "list-clients":
            command.add_argument("node_id")
    args = parser.parse_args(argv)
    try:
        settings = PkiSettings.from_env()
    except ValueError as exc:
        fail(f"invalid configuration: {exc}")
    COMMANDS[args.command](Authority(settings, now or datetime.now(UTC)), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
