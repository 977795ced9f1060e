"""What the benchmarks run on, and the CPU the Docker daemon spends."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DAEMON_COMMANDS = {"dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2"}


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def daemon_cpu_seconds() -> float:
    """CPU seconds used so far by dockerd, containerd and every containerd shim."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() in DAEMON_COMMANDS:
                total += process_cpu_seconds(int(proc.name))
        except (OSError, IndexError, ValueError):
            continue
    return total


def machine() -> dict[str, Any]:
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    engine = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    return {
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "docker_engine": engine,
    }
