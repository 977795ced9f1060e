"""A real cgroup v2 host for tests: the throw-away VM of ``../shared/ci/v2-host``, and the agent on it.

The guest runs Debian trixie with systemd, the unified hierarchy and Docker Engine 26 with the
systemd cgroup driver (what Raspberry Pi OS Bookworm and current distributions run); its engine
is forwarded to 127.0.0.1:23750. The agent runs there from its image exactly as
``compose.rpi.yaml`` runs it (``docker compose run`` with DOCKER_HOST pointed at the guest), and
the guest's own /proc, /sys and df are read through ``v2-host exec`` for comparison.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import docker
import requests

from tests.support.agent_process import REPO
from tests.support.gates import skip_or_fail

T = TypeVar("T")

TOOL = Path(os.environ.get("OTTO_V2_HOST_TOOL", REPO.parent / "shared" / "ci" / "v2-host"))
PORT = int(os.environ.get("V2_HOST_PORT", "23750"))
# The guest runs under software emulation: its CFS periods jitter, so the CLI's one-second window
# on a container capped at half a core has read 56 % while our two-second window read 50 % (CI,
# 2026-11-29). Our own figure is still held to 50 +/- 5 against the cap itself.
CLI_CPU_POINTS = 10.0
AGENT_IMAGE = "otto-metrics/agent:local"
IMAGES = (AGENT_IMAGE, "busybox:1.36")


def require_v2_host() -> None:
    """Skip without the VM tool; fail instead when OTTO_REQUIRE_V2_HOST=1 (CI)."""
    problem = None if TOOL.exists() else f"{TOOL} not found"
    if problem is None and shutil.which("docker") is None:
        problem = "no docker CLI"
    skip_or_fail(problem, "OTTO_REQUIRE_V2_HOST", f"no cgroup v2 test host ({problem}); `make v2host` brings one up")


@dataclass
class AgentRun:
    """What one ``--once`` run of the agent on the guest printed and logged."""

    node: dict[str, Any]
    containers: dict[str, Any]
    log: str

    def by_name(self) -> dict[str, dict[str, Any]]:
        return {c["container_name"]: c for c in self.containers["containers"]}


@dataclass
class Guest:
    """The running VM: its engine (SDK client and CLI environment) and a shell on the host itself."""

    kernel_append: str = ""
    client: docker.DockerClient = field(init=False)

    @property
    def cli_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTTO_", "DOCKER_", "COMPOSE_"))}
        return env | {"DOCKER_HOST": f"tcp://127.0.0.1:{PORT}"}

    def _tool(self, *args: str, timeout: float, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            [str(TOOL), *args], capture_output=True, text=True, check=False, timeout=timeout,
            env=(os.environ | (env or {})),
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"v2-host {args[0]} failed ({result.returncode}): {result.stderr[-2000:]}")
        return result.stdout

    def start(self) -> None:
        """Up with this kernel command line (rebooting the VM if it runs with another), images seeded."""
        running = "vm: running" in self._tool("status", timeout=60)
        if running and self._appended() != self.kernel_append:
            self._tool("down", timeout=300)
            running = False
        if not running:
            self._boot()
        self._tool("seed", *IMAGES, timeout=900)
        self.client = docker.DockerClient(base_url=f"tcp://127.0.0.1:{PORT}", timeout=120)
        self._wait_until_steady()

    def _boot(self, attempts: int = 2) -> None:
        # Under TCG emulation the guest kernel has panicked during boot now and then (a fault in
        # devcgroup_check_permission, seen once in a benchmark run, never on the next boot): one more try.
        for attempt in range(1, attempts + 1):
            try:
                self._tool("up", timeout=1500, env={"V2_HOST_APPEND": self.kernel_append})
                return
            except RuntimeError:
                if attempt == attempts:
                    raise
                self._tool("down", timeout=300)

    def _wait_until_steady(self, answers: int = 5, timeout: float = 180) -> None:
        """Right after a boot the forwarded engine may drop a connection or two: wait for
        ``answers`` pings in a row before the tests talk to it."""
        deadline = time.monotonic() + timeout
        streak = 0
        while streak < answers:
            try:
                self.client.ping()
                streak += 1
            except (requests.RequestException, docker.errors.DockerException):
                if time.monotonic() > deadline:
                    raise
                streak = 0
            time.sleep(1)

    def alive(self) -> bool:
        try:
            self.client.ping()
        except (requests.RequestException, docker.errors.DockerException):
            return False
        return True

    def survive(self, setup: Callable[[], T]) -> T:
        """``setup()``; if the guest died meanwhile, boot it again (a fresh overlay) and run it once more.

        Under TCG emulation the guest kernel has faulted in devcgroup_check_permission while a
        container started (CI, 2026-11-29: the engine closed the connection, then refused it). That
        is the emulator's, not the agent's: the suite reboots once rather than fail on it.
        """
        try:
            return setup()
        except (requests.RequestException, docker.errors.DockerException):
            if self.alive():
                raise
        print("v2 host: the guest stopped answering during set-up; booting it again", file=sys.stderr)
        self.client.close()
        self._tool("down", timeout=300)
        self.start()
        return setup()

    def down(self) -> None:
        """Stop the VM (its 1.5 cores) and drop its overlay."""
        self._tool("down", timeout=300)

    def _appended(self) -> str:
        cmdline = self.exec("cat /proc/cmdline").split()
        return " ".join(arg for arg in cmdline if arg.startswith("cgroup_"))

    def exec(self, command: str, timeout: float = 120) -> str:
        """A shell command on the guest host itself (its PID 1's namespaces); its stdout."""
        return self._tool("exec", command, timeout=timeout)

    def facts(self) -> dict[str, Any]:
        """The guest's own figures, read at one moment: /proc, statvfs through df, physical NICs."""
        script = (
            "cat /proc/uptime; nproc; grep -E '^(MemTotal|MemAvailable):' /proc/meminfo; "
            "df -B1 --output=size,used,avail / | tail -1; "
            "for i in /sys/class/net/*; do [ -e $i/device ] && echo nic $(cat $i/statistics/rx_bytes) "
            "$(cat $i/statistics/tx_bytes); done; cat /sys/fs/cgroup/cgroup.controllers"
        )
        lines = self.exec(script).splitlines()
        meminfo = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in lines[2:4]}
        size, used, avail = (int(v) for v in lines[4].split())
        nics = [line.split()[1:] for line in lines if line.startswith("nic ")]
        return {
            "uptime": float(lines[0].split()[0]),
            "cpus": int(lines[1]),
            "mem_total": meminfo["MemTotal"],
            "mem_available": meminfo["MemAvailable"],
            "disk_total": size,
            "disk_used": used,
            "disk_free": avail,
            "net_rx": sum(int(rx) for rx, _ in nics),
            "net_tx": sum(int(tx) for _, tx in nics),
            "controllers": lines[-1].split(),
        }

    def run_agent(
        self,
        interval: float,
        settings: dict[str, str] | None = None,
        after_prime: Callable[[], None] | None = None,
        timeout: float = 300,
    ) -> AgentRun:
        """``compose.rpi.yaml``'s agent with ``--once`` on the guest; ``after_prime`` runs when it has primed."""
        project = f"otto-v2-{uuid.uuid4().hex[:6]}"
        env = self.cli_env | {
            "COMPOSE_PROJECT_NAME": project,
            "OTTO_AGENT_IMAGE": AGENT_IMAGE,
            "OTTO_PULL_POLICY": "never",
            "OTTO_NODE_ID": "v2-guest",
            "OTTO_MQTT_PASSWORD_FILE": "",  # --once publishes nothing: no bundle on the guest
        }
        extra = [arg for key, value in (settings or {}).items() for arg in ("-e", f"{key}={value}")]
        command = ["docker", "compose", "-f", "compose.rpi.yaml", "run", "--rm", "--no-deps", "-T", *extra, "agent"]
        process = subprocess.Popen(
            [*command, "--once", "--interval", str(interval)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        log: list[str] = []
        primed = threading.Event()

        def read_log() -> None:
            assert process.stderr is not None
            for line in process.stderr:
                log.append(line)
                if "container stats:" in line:  # logged at the end of the priming cycle
                    primed.set()

        reader = threading.Thread(target=read_log, daemon=True)
        reader.start()
        try:
            if after_prime is not None:
                if not primed.wait(timeout):
                    raise TimeoutError("the agent never primed:\n" + "".join(log))
                after_prime()
            assert process.stdout is not None
            stdout = process.stdout.read()  # stderr is the reader thread's alone
            process.wait(timeout)
        finally:
            if process.poll() is None:
                process.kill()
            reader.join(10)
            subprocess.run(
                ["docker", "compose", "-f", "compose.rpi.yaml", "down", "--remove-orphans"],
                cwd=REPO, env=env, capture_output=True, check=False, timeout=120,
            )  # fmt: skip
        text = "".join(log)
        assert process.returncode == 0, text
        messages = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
        node = next(m for m in messages if "containers" not in m)
        containers = next(m for m in messages if "containers" in m)
        return AgentRun(node, containers, text)
