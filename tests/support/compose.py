"""The real Compose stacks for end-to-end tests, under unique project names and free ports."""

from __future__ import annotations

import uuid
from pathlib import Path

from testcontainers.compose import DockerCompose

from tests.support.agent_process import REPO


def root_is_shared_mount() -> bool:
    """Whether host / is a shared mount (systemd hosts), which the rslave host-root mount needs."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":
            return any(tag.startswith("shared:") for tag in fields[6 : fields.index("-")])
    return False


def host_docker_gid() -> int:
    return Path("/var/run/docker.sock").stat().st_gid


def stack(compose_file: str, workdir: Path, **variables: str) -> DockerCompose:
    """A DockerCompose for ``compose_file`` with its own project name and an env file of ``variables``."""
    name = f"otto-e2e-{uuid.uuid4().hex[:6]}"
    settings = {
        "COMPOSE_PROJECT_NAME": name,
        "DOCKER_GID": str(host_docker_gid()),
        "OTTO_HOSTFS_MOUNT_OPTIONS": "ro,rslave" if root_is_shared_mount() else "ro",
        **variables,
    }
    env_file = workdir / f"{name}.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    return DockerCompose(context=str(REPO), compose_file_name=compose_file, env_file=str(env_file), wait=True)
