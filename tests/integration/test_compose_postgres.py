"""End to end: `docker compose --profile postgres up`: PostgreSQL with a generated password, the
subscriber and two replicas sharing the ingestion, the local node's history in PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator

import docker
import pytest
from prometheus_client.parser import text_string_to_metric_families
from testcontainers.compose import DockerCompose

from tests.integration.test_compose_e2e import process_status
from tests.support.broker import free_port
from tests.support.compose import stack
from tests.support.load import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.slow]

LOCAL_NODE = "cp-pg"
PSQL = ("psql", "-U", "otto", "-d", "otto", "-At", "-c")


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerCompose]:
    workdir = tmp_path_factory.mktemp("compose-pg")
    compose = stack(
        "compose.yaml",
        workdir,
        profiles=["postgres"],
        OTTO_PUBLISH_MQTT_PORT=str(free_port()),
        OTTO_PUBLISH_MQTT_CLIENT_CERT_PORT=str(free_port()),
        OTTO_PUBLISH_API_PORT=str(free_port()),
        OTTO_LOCAL_NODE_ID=LOCAL_NODE,
        OTTO_INTERVAL="2",
    )
    compose.build = True
    with compose:
        yield compose


def run(compose: DockerCompose, service: str, *command: str) -> str:
    stdout, stderr, code = compose.exec_in_container(list(command), service)
    assert code == 0, stderr
    return stdout


def replica_get(container_id: str, path: str, token: str) -> str:
    """GET ``path`` from one subscriber's own API, from inside its container (replicas publish no port)."""
    script = (
        "import json, sys, urllib.request as u; r = u.Request('http://127.0.0.1:8080' + sys.argv[1]); "
        "r.add_header('Authorization', 'Bearer ' + sys.argv[2]); print(u.urlopen(r, timeout=10).read().decode())"
    )
    client = docker.from_env()
    try:
        result = client.containers.get(container_id).exec_run(["python", "-c", script, path, token])
    finally:
        client.close()
    assert result.exit_code == 0, result.output
    return str(result.output.decode())


def node_messages_received(container_id: str, token: str) -> float:
    body = replica_get(container_id, "/metrics?scope=replica", token)
    return sum(
        sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == "otto_subscriber_messages_received_total" and sample.labels.get("kind") == "node"
    )


def test_history_goes_to_postgres_and_every_replica_answers_for_the_fleet(plane: DockerCompose) -> None:
    containers = {c.Service: c for c in plane.get_containers()}
    replicas = [c for c in plane.get_containers() if c.Service == "subscriber-replica"]
    assert len(replicas) == 2
    assert {"postgres", "subscriber", "mosquitto", "agent"} <= set(containers)
    wait_until(lambda: int(run(plane, "postgres", *PSQL, "SELECT count(*) FROM node_samples").strip()) >= 6, 90)
    nodes = run(plane, "postgres", *PSQL, "SELECT DISTINCT node_id FROM node_samples").split()
    assert nodes == [LOCAL_NODE]
    token = run(plane, "subscriber", "python", "-m", "subscriber.access", "create-token", "pg-e2e").strip()
    for replica in replicas:  # logins and tokens are shared: the token works on every replica
        listed = json.loads(replica_get(replica.ID, "/api/nodes", token))
        assert [n["node_id"] for n in listed] == [LOCAL_NODE]
        health = json.loads(replica_get(replica.ID, "/healthz", token))
        assert health["status"] == "ok", health
    # The node's messages went round robin to the subscriber and the replicas: each got some.
    members = [containers["subscriber"], *replicas]
    wait_until(lambda: all(node_messages_received(m.ID, token) > 0 for m in members), 60)


def test_the_database_password_is_generated_private_and_postgres_runs_unprivileged(
    plane: DockerCompose, docker_client: docker.DockerClient
) -> None:
    listing = run(plane, "postgres", "stat", "-c", "%a %u %g %s", "/run/otto-db/postgres.password").split()
    assert listing[:3] == ["640", "0", "1883"]
    assert int(listing[3]) >= 24
    attrs = docker_client.api.inspect_container(plane.get_container("postgres").ID)
    assert attrs["HostConfig"]["ReadonlyRootfs"] is True
    status = process_status(attrs["State"]["Pid"])
    assert status["Uid"].split() == ["999"] * 4
    for capability_set in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(status[capability_set], 16) == 0, capability_set
    # From the network the password is required (trust only from inside the container, as the image does).
    hba = run(plane, "postgres", "sh", "-c", "grep -v '^#' /var/lib/postgresql/data/pg_hba.conf | grep host")
    rules = [line.split() for line in hba.splitlines()]
    assert all(rule[3] in ("127.0.0.1/32", "::1/128") for rule in rules if rule[-1] == "trust"), rules
    assert ["host", "all", "all", "all", "scram-sha-256"] in rules
