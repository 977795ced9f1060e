"""Whether a Docker Engine is reachable, and what to do when it is not."""

from __future__ import annotations

import functools
import os

import docker
import pytest
from docker.errors import DockerException


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
    if problem is None:
        return
    if os.environ.get("OTTO_REQUIRE_DOCKER") == "1":
        pytest.fail(f"OTTO_REQUIRE_DOCKER=1 but no Docker Engine is reachable: {problem}", pytrace=False)
    pytest.skip(f"no Docker Engine reachable ({problem}); set OTTO_REQUIRE_DOCKER=1 to make this an error")
