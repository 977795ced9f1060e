"""``make multiarch``: build the agent image for linux/arm64 and linux/arm/v7 here, run it, check it.

For each platform: build the real Dockerfile.agent (base substituted through PYTHON_IMAGE, by
default the local stand-ins that ``../shared/ci/docker-host seed`` creates), then check that the
image is labelled for that platform, holds no compiler and runs as non-root, and run
``python -m agent --once`` under QEMU as a user would on a Pi (host root and Docker socket
mounted, read-only root filesystem): both messages must validate against the contract and the
interpreter must report the platform's machine (aarch64, armv7l). Prints build time and size.
Exit status 1 if any check fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from contract import ContainerMetricsBatch, NodeMetrics

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Platform:
    name: str
    base: str
    machine: str
    architecture: str
    variant: str | None
    tag: str


PLATFORMS = [
    Platform(
        "linux/arm64",
        os.environ.get("ARM64_BASE", "local/python:3.12-slim-arm64"),
        "aarch64",
        "arm64",
        None,
        "otto-metrics/agent:arm64",
    ),
    Platform(
        "linux/arm/v7",
        os.environ.get("ARMV7_BASE", "local/python:3.12-slim-armv7"),
        "armv7l",
        "arm",
        "v7",
        "otto-metrics/agent:armv7",
    ),
]


def docker(*args: str, timeout: float = 3600) -> str:
    result = subprocess.run(["docker", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])} ... failed:\n{result.stderr[-3000:]}")
    return result.stdout


def check(platform: Platform) -> dict[str, object]:
    report: dict[str, object] = {"platform": platform.name, "base": platform.base}
    started = time.monotonic()
    docker(
        "build", "--platform", platform.name, "--build-arg", f"PYTHON_IMAGE={platform.base}",
        "-f", "Dockerfile.agent", "-t", platform.tag, ".",
    )  # fmt: skip
    report["build_seconds"] = round(time.monotonic() - started, 1)

    image = json.loads(docker("image", "inspect", platform.tag))[0]
    assert image["Architecture"] == platform.architecture, f"labelled {image['Architecture']}"
    assert image.get("Variant") == platform.variant, f"variant {image.get('Variant')}"
    assert image["Config"]["User"] == "10001:10001", f"runs as {image['Config']['User']!r}"
    report["size_mb"] = round(image["Size"] / 1e6, 1)

    run = ["run", "--rm", "--platform", platform.name]
    find_compilers = (
        "for c in gcc cc c++ g++ cpp clang; do command -v $c; done; "
        "ls /usr/bin /usr/local/bin | grep -E '^(gcc|g\\+\\+|cc1)'; true"
    )
    compilers = docker(*run, "--entrypoint", "sh", platform.tag, "-c", find_compilers).split()
    assert compilers == [], f"compiler in the runtime image: {compilers}"
    uid = docker(*run, "--entrypoint", "id", platform.tag, "-u").strip()
    assert uid == "10001", f"uid {uid}"

    socket_gid = str(os.stat("/var/run/docker.sock").st_gid)
    output = docker(
        *run, "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "-v", "/:/hostfs:ro", "-v", "/var/run/docker.sock:/var/run/docker.sock:ro", "--group-add", socket_gid,
        "-e", "OTTO_HOST_ROOT=/hostfs", platform.tag, "--once", "--interval", "2",
        timeout=600,
    )  # fmt: skip
    node_line, containers_line = output.strip().splitlines()
    node = NodeMetrics.model_validate_json(node_line)
    batch = ContainerMetricsBatch.model_validate_json(containers_line)
    assert node.agent.arch == platform.machine, f"ran on {node.agent.arch}"
    assert batch.error is None, batch.error
    assert batch.containers, "no container measured (the agent's own at least)"
    assert 0 < node.memory_used_mb < node.memory_total_mb
    report.update(machine=node.agent.arch, containers_measured=len(batch.containers), uid=uid, compiler="none")
    return report


def main() -> int:
    failures = 0
    for platform in PLATFORMS:
        try:
            report = check(platform)
        except (AssertionError, RuntimeError, ValueError) as exc:
            failures += 1
            print(f"FAIL {platform.name}: {exc}", flush=True)
            continue
        print(
            f"ok   {report['platform']:13} ran on {report['machine']:8} uid {report['uid']}, no compiler, "
            f"measured {report['containers_measured']} containers; image {report['size_mb']} MB, "
            f"built in {report['build_seconds']} s (base {report['base']})",
            flush=True,
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
