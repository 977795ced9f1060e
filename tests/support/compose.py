"""The real Compose stacks for end-to-end tests, under unique project names and free ports."""

from __future__ import annotations

import uuid
from pathlib import Path

from testcontainers.compose import DockerCompose

from tests.support.agent_process import REPO


def stack(compose_file: str, workdir: Path, profiles: list[str] | None = None, **variables: str) -> DockerCompose:
    """A DockerCompose for ``compose_file`` with its own project name and an env file of ``variables``."""
    name = f"otto-e2e-{uuid.uuid4().hex[:6]}"
    settings = {
        "COMPOSE_PROJECT_NAME": name,  # nothing about the host: a first run needs no edits
        **variables,
    }
    env_file = workdir / f"{name}.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    return DockerCompose(
        context=str(REPO), compose_file_name=compose_file, env_file=str(env_file), wait=True, profiles=profiles
    )


def project_name(compose: DockerCompose) -> str:
    """The project name ``stack`` gave ``compose`` (from its env file)."""
    files = compose.env_file if isinstance(compose.env_file, list) else [compose.env_file]
    for line in Path(str(files[0])).read_text().splitlines():
        if line.startswith("COMPOSE_PROJECT_NAME="):
            return line.split("=", 1)[1]
    raise ValueError("no COMPOSE_PROJECT_NAME in the env file")
