"""Whether a Docker Engine is reachable, and what to do when it is not."""

from __future__ import annotations

import functools

import docker
from docker.errors import DockerException

from tests.support.gates import skip_or_fail


@functools.cache
def _engine_problem() -> str | None:
    try:
        client = docker.from_env(timeout=10)
        client.ping()
        client.close()
    except (DockerException, OSError) as exc:
        return str(exc).splitlines()[0][:200]
    return None


def require_docker() -> None:
    """Skip the calling test without an engine; fail instead when OTTO_REQUIRE_DOCKER=1 (CI)."""
    problem = _engine_problem()
    skip_or_fail(
        None if problem is None else f"no Docker Engine is reachable: {problem}",
        "OTTO_REQUIRE_DOCKER",
        f"no Docker Engine reachable ({problem})",
    )
