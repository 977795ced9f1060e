"""``python -m subscriber`` / ``otto-subscriber``: run the control-plane subscriber and its API."""

from __future__ import annotations

import argparse
import logging
import signal
import sqlite3
import ssl
import sys
import time
from collections.abc import Callable, Sequence

import uvicorn
from prometheus_client import CollectorRegistry

from common import __version__
from common.cli import fail_config, load_settings_or_exit, read_secret_file, setup_logging
from common.mqtt_client import MqttConfig
from common.supervision import EXIT_THREAD_DIED, Supervisor
from subscriber.access.passwords import hash_password, new_password, verify_password
from subscriber.access.store import SqliteAccessStore
from subscriber.alerts.api import alerts_router, events_router
from subscriber.alerts.engine import AlertEngine
from subscriber.alerts.notify import AppriseSender, Notifier
from subscriber.alerts.rules import RulesError, load_rules
from subscriber.alerts.service import AlertCounters, AlertService
from subscriber.alerts.store import SqliteAlertStore
from subscriber.api import Liveness, create_app
from subscriber.broker_certificate import BrokerCertificateWatch, certificate_router
from subscriber.consumer import BrokerConfig, Limits, MetricsSubscriber
from subscriber.homeassistant.discovery import Discovery
from subscriber.homeassistant.reconcile import Reconciler
from subscriber.homeassistant.service import DiscoveryCounters, HomeAssistantDiscovery
from subscriber.postgres_store import PostgresHistoryStore
from subscriber.prometheus import FleetCollector, SubscriberCounters
from subscriber.replica_sync import ReplicaSync
from subscriber.settings import SubscriberSettings
from subscriber.state import FleetState
from subscriber.store import SqliteHistoryStore, StoreUnavailable

PROGRAM = "otto-subscriber"
#: How long a starting subscriber waits for its PostgreSQL (starting with it under Compose).
DATABASE_WAIT_SECONDS = 60.0
log = logging.getLogger("subscriber")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Consume every node's metrics from MQTT; keep the live state and the history; "
        "serve them over HTTP (API, OpenAPI at /docs, Prometheus at /metrics). "
        "Configured with OTTO_* environment variables (see README).",
    )
    parser.add_argument("--version", action="version", version=f"{PROGRAM} {__version__}")
    return parser.parse_args(argv)


def build_alerts(
    settings: SubscriberSettings,
    state: FleetState,
    registry: CollectorRegistry,
    certificate: BrokerCertificateWatch | None = None,
) -> AlertService | None:
    """The alerting service the settings ask for (None with OTTO_ALERTS=false); exits on a bad setting."""
    if not settings.alerts:
        return None
    try:
        rules = load_rules(settings.alerts_file)
    except RulesError as exc:
        fail_config(PROGRAM, f"invalid configuration: OTTO_ALERTS_FILE: {exc}")
    urls = settings.notify_url_list
    try:
        sender = AppriseSender(urls) if urls else None
    except ValueError as exc:
        fail_config(PROGRAM, f"invalid configuration: OTTO_NOTIFY_URLS: {exc}")
    try:
        store = SqliteAlertStore(settings.db_path)
    except (OSError, sqlite3.Error) as exc:
        fail_config(PROGRAM, f"invalid configuration: OTTO_DB_PATH: cannot open {settings.db_path}: {exc}")
    counters = AlertCounters(registry)
    notifier = None
    if sender is not None:
        notifier = Notifier(
            store, sender, len(sender), lambda outcome: counters.notifications.labels(outcome).inc(),
            describe=sender.descriptions,
        )  # fmt: skip
    engine = AlertEngine(rules, started_at=time.time(), stale_after=settings.stale_after)
    log.info(
        "alerts: rules from %s, notifying %s",
        settings.alerts_file or "the defaults",
        ", ".join(sender.descriptions) if sender else "nobody (set OTTO_NOTIFY_URLS)",
    )
    return AlertService(
        engine,
        store,
        notifier,
        state,
        counters,
        public_url=settings.public_url,
        certificate_days=certificate.days_left if certificate is not None else lambda: None,
    )


def build_homeassistant(
    settings: SubscriberSettings, state: FleetState, registry: CollectorRegistry, tls: ssl.SSLContext | None = None
) -> HomeAssistantDiscovery | None:
    """Home Assistant discovery as the settings ask (None with OTTO_HA_DISCOVERY=off)."""
    if settings.ha_discovery == "off":
        return None
    discovery = Discovery(
        prefix=settings.ha_prefix,
        layout=settings.ha_discovery,
        containers=settings.ha_containers,
        public_url=settings.public_url,
        stale_after=settings.stale_after,
        version=__version__,
    )
    reconciler = Reconciler(
        discovery,
        container_expire=settings.ha_container_expire.total_seconds(),
        node_expire=settings.ha_node_expire.total_seconds(),
    )
    config = MqttConfig(
        host=settings.mqtt_host,
        port=settings.mqtt_port_value,
        username=settings.mqtt_username,
        password=settings.mqtt_password_value,
        client_id=f"{settings.mqtt_client_id}-homeassistant",
        tls=tls,
    )
    log.info(
        "home assistant: %s discovery under %s/, containers %s",
        settings.ha_discovery,
        settings.ha_prefix,
        settings.ha_containers,
    )
    return HomeAssistantDiscovery(config, reconciler, state, DiscoveryCounters(registry))


def tls_or_exit(settings: SubscriberSettings) -> ssl.SSLContext | None:
    """The broker's TLS context, or one line and exit 2 when its files cannot be used."""
    try:
        return settings.mqtt_tls_context(log)
    except ValueError as exc:
        fail_config(PROGRAM, f"invalid configuration: {exc}")


def open_access(settings: SubscriberSettings) -> SqliteAccessStore | None:
    """The login and token store (None with OTTO_AUTH=false); the admin's password set or created."""
    if not settings.auth:
        log.warning("OTTO_AUTH=false: the dashboard and the API are open to anyone who can reach them")
        return None
    try:
        access = SqliteAccessStore(settings.db_path)
        given = read_secret_file(settings.admin_password_file) if settings.admin_password_file else None
    except (OSError, sqlite3.Error) as exc:
        fail_config(PROGRAM, f"invalid configuration: OTTO_ADMIN_PASSWORD_FILE or OTTO_DB_PATH: {exc}")
    stored = access.admin_hash()
    if given is not None:
        if len(given) < 12:
            fail_config(PROGRAM, "invalid configuration: OTTO_ADMIN_PASSWORD_FILE: at least 12 characters")
        if stored is None or not verify_password(given, stored):
            access.set_admin_hash(hash_password(given))
            log.info("admin password set from OTTO_ADMIN_PASSWORD_FILE")
    elif stored is None:
        password = new_password()
        access.set_admin_hash(hash_password(password))
        log.warning(
            "created the admin's password, shown this once: %s  (a new one: "
            "docker compose exec subscriber python -m subscriber.access reset-password)",
            password,
        )
    return access


def open_postgres(settings: SubscriberSettings, wait: float = DATABASE_WAIT_SECONDS) -> PostgresHistoryStore:
    """The PostgreSQL history, waited for up to ``wait`` seconds (it may be starting too); exits 2 after."""
    assert settings.database_url is not None
    try:
        password = settings.database_password
    except OSError as exc:
        fail_config(PROGRAM, f"invalid configuration: OTTO_DATABASE_PASSWORD_FILE: {exc}")
    deadline = time.monotonic() + wait
    while True:
        try:
            return PostgresHistoryStore(
                settings.database_url.get_secret_value(), settings.history_retention, password=password
            )
        except StoreUnavailable as exc:
            if time.monotonic() > deadline:
                fail_config(
                    PROGRAM,
                    f"invalid configuration: OTTO_DATABASE_URL: cannot connect: {exc} "
                    "(Compose: the history is in PostgreSQL since the postgres profile ran: "
                    "docker compose --profile postgres up)",
                )
            log.warning("history database not reachable yet (%s); retrying", exc)
            time.sleep(2.0)


def open_history(settings: SubscriberSettings) -> tuple[SqliteHistoryStore | PostgresHistoryStore, FleetState, int]:
    """The history store, and the live state restored from it (with how many nodes); exits 2 if it cannot open."""
    store: SqliteHistoryStore | PostgresHistoryStore
    if settings.database_url is not None:
        store = open_postgres(settings)
    else:
        if settings.database_url_file is not None:  # the postgres profile has not run: no replica group either
            log.info(
                "no PostgreSQL address in %s (the postgres profile writes it): history in SQLite at %s, one subscriber",
                settings.database_url_file,
                settings.db_path,
            )
        try:
            store = SqliteHistoryStore(settings.db_path, retention=settings.history_retention)
        except (OSError, sqlite3.Error) as exc:
            fail_config(PROGRAM, f"invalid configuration: OTTO_DB_PATH: cannot open {settings.db_path}: {exc}")
    state = FleetState(settings.stale_after, settings.max_clock_skew)
    restored = store.latest_views()
    for view in restored:
        state.restore(view)
    return store, state, len(restored)


def build_replica(
    settings: SubscriberSettings,
    store: SqliteHistoryStore | PostgresHistoryStore,
    state: FleetState,
    registry: CollectorRegistry,
) -> tuple[CollectorRegistry, ReplicaSync | None]:
    """The fleet's Prometheus registry; with OTTO_SHARED_GROUP, also the sync of the other replicas' state."""
    fleet_registry = CollectorRegistry()
    grace = settings.prometheus_grace.total_seconds()
    if settings.shared_group is None:
        fleet_registry.register(FleetCollector(state, grace))
        return fleet_registry, None
    assert isinstance(store, PostgresHistoryStore)  # the settings require it
    registry.set_target_info({"replica": settings.replica_id})
    fleet_registry.register(FleetCollector(stored_fleet(store, state), grace))
    return fleet_registry, ReplicaSync(store, state)


def stored_fleet(store: PostgresHistoryStore, state: FleetState) -> Callable[[], FleetState]:
    """The fleet as the database holds it, for /metrics: every replica then answers a scrape alike,
    and no series steps back when a load balancer sends two scrapes to two replicas. This
    replica's own state if the database cannot be read."""

    def read() -> FleetState:
        try:
            views = store.latest_views()
        except StoreUnavailable:
            return state
        fleet = FleetState(state.stale_after, state.max_clock_skew)
        for view in views:
            fleet.restore(view)
        return fleet

    return read


def main(argv: Sequence[str] | None = None) -> int:
    parse_args(argv)
    settings = load_settings_or_exit(SubscriberSettings, PROGRAM)
    setup_logging(settings.log_level)
    tls = tls_or_exit(settings)
    store, state, restored = open_history(settings)
    access = open_access(settings)
    registry = CollectorRegistry()
    counters = SubscriberCounters(registry)
    fleet_registry, sync = build_replica(settings, store, state, registry)
    subscriber = MetricsSubscriber(
        BrokerConfig(
            host=settings.mqtt_host,
            port=settings.mqtt_port_value,
            username=settings.mqtt_username,
            password=settings.mqtt_password_value,
            client_id=settings.client_id,
            tls=tls,
            session_expiry=settings.mqtt_session_expiry,
            shared_group=settings.shared_group,
        ),
        state,
        store,
        counters,
        max_payload_bytes=settings.max_payload_bytes,
        retention=settings.retention,
        log_messages=settings.log_messages,
        limits=Limits(
            node_rate=settings.node_rate_limit,
            node_burst=settings.node_rate_burst,
            queue_messages=settings.queue_max_messages,
            queue_bytes=settings.queue_max_bytes,
        ),
    )
    certificate = BrokerCertificateWatch(settings.broker_tls_address, registry) if settings.broker_tls_address else None
    alerts = build_alerts(settings, state, registry, certificate)
    homeassistant = build_homeassistant(settings, state, registry, tls)
    if alerts is not None:
        subscriber.ingestor.event_listeners.append(alerts.submit)
    app = create_app(
        state,
        store,
        registry,
        lambda: Liveness(
            threads={role: t.is_alive() for role, t in subscriber.threads.items()},
            mqtt_connected=subscriber.connected,
            store_problem=subscriber.ingestor.store_problem,
        ),
        routers=[
            events_router(state, store),
            alerts_router(lambda: alerts.store if alerts else None, settings.public_url),
            certificate_router(lambda: certificate),
        ],
        access=access,
        session_lifetime=settings.session_lifetime.total_seconds(),
        fleet_registry=fleet_registry,
    )
    log.info(
        "otto-subscriber %s%s: broker %s:%d, history %s (retention %s, %d nodes restored), API on %s:%d",
        __version__,
        f" (replica {settings.replica_id} of group {settings.shared_group})" if settings.shared_group else "",
        settings.mqtt_host,
        settings.mqtt_port_value,
        "in PostgreSQL" if settings.database_url is not None else settings.db_path,
        settings.retention,
        restored,
        settings.api_host,
        settings.api_port,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.api_host,
            port=settings.api_port,
            log_config=None,
            access_log=False,
            log_level=settings.log_level.lower(),
            # X-Forwarded-For/-Proto only from the proxies named: anyone else could claim HTTPS or an address.
            proxy_headers=settings.trusted_proxies is not None,
            forwarded_allow_ips=settings.trusted_proxies or "",
            ssl_certfile=settings.api_tls_cert_file,
            ssl_keyfile=settings.api_tls_key_file,
        )
    )
    # uvicorn handles SIGTERM/SIGINT itself, then restores the handlers it found and raises the
    # signal again; finding these, that second delivery is a no-op and the cleanup below runs.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    died: list[str] = []

    def on_death(role: str) -> None:
        died.append(role)
        server.should_exit = True

    threads = {
        **subscriber.threads,
        **({"alerts": alerts.thread} if alerts else {}),
        **(homeassistant.threads if homeassistant else {}),
        **({"broker-certificate": certificate.thread} if certificate else {}),
        **({"replica-sync": sync.thread} if sync else {}),
    }
    supervisor = Supervisor(threads, on_death)
    helpers = [part for part in (certificate, alerts, homeassistant, sync) if part is not None]
    for helper in helpers:
        helper.start()
    subscriber.start()
    supervisor.start()
    try:
        server.run()
    finally:
        supervisor.stop()
        subscriber.stop()
        for helper in helpers:
            helper.stop()
        if alerts is not None:
            alerts.store.close()
        if access is not None:
            access.close()
        store.close()
        log.info("stopped")
    return EXIT_THREAD_DIED if died else 0


if __name__ == "__main__":
    sys.exit(main())
