"""Node metrics of the host: psutil on the host's /proc, plus our own net/dev and sysfs readers."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

import psutil

from agent import procfs, sysfs
from agent.files import read_optional, read_text
from agent.problems import Problems
from common.counters import counter_rate
from contract.units import GIB, MIB


class HostFields(TypedDict, total=False):
    """The NodeMetrics fields read from the host (node_id, time, cycle and agent come from the cycle).

    A source that could not be read leaves its keys out: they are null in the message.
    """

    cpu_percent: float
    cpu_per_core: list[float]
    cpu_count: int
    cpu_freq_mhz: float | None
    load_1: float | None
    load_5: float | None
    load_15: float | None
    uptime_seconds: float | None
    memory_percent: float
    memory_used_mb: float
    memory_total_mb: float
    memory_available_mb: float
    swap_percent: float
    swap_used_mb: float
    swap_total_mb: float
    disk_percent: float
    disk_used_gb: float
    disk_total_gb: float
    network_bytes_sent: int
    network_bytes_recv: int
    network_sent_rate: float | None
    network_recv_rate: float | None
    temperature_c: float | None
    under_voltage: bool | None
    memory_cgroup_enabled: bool | None


class HostPaths:
    """Where the host's procfs, sysfs, root filesystem and network counters are seen from here.

    With ``host_root`` (host ``/`` mounted there read-only) every figure describes the host; without
    it, the machine (or container) the agent runs in.
    """

    def __init__(self, host_root: Path | None) -> None:
        self.host_root = host_root
        base = host_root or Path("/")
        self.proc = base / "proc"
        self.sys = base / "sys" if host_root is None or (base / "sys" / "class").is_dir() else Path("/sys")
        self.disk = base
        # /proc/net is the reader's own network namespace; pid 1 of the host lives in the host's.
        self.net_dev = self.proc / "1" / "net" / "dev" if host_root else Path("/proc/self/net/dev")

    def hostname(self) -> str:
        """The host's hostname (from its /etc/hostname when the host root is mounted)."""
        if self.host_root is not None:
            try:
                name = (self.host_root / "etc" / "hostname").read_text(encoding="utf-8").strip()
            except OSError:
                name = ""
            if name:
                return name.split(".")[0]
        return socket.gethostname().split(".")[0]


class HostCollector:
    """Reads node-level figures; CPU % averages the whole interval since the previous call."""

    def __init__(
        self, paths: HostPaths, problems: Problems | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.paths = paths
        self._clock = clock
        self.problems = problems if problems is not None else Problems()
        psutil.PROCFS_PATH = str(paths.proc)
        self._cpu_total = psutil.cpu_times()
        self._cpu_cores = psutil.cpu_times(percpu=True)
        self._memory_cgroup = sysfs.memory_cgroup_enabled(paths.sys, paths.proc)
        self._sensors = sysfs.Sensors.find(paths.sys)
        self._network_before: tuple[float, int, int] | None = None  # (monotonic, sent, received)

    @property
    def memory_cgroup_enabled(self) -> bool | None:
        return self._memory_cgroup

    def prime(self) -> None:
        """Start a new CPU averaging interval, and network rate interval, now."""
        self._cpu_total = psutil.cpu_times()
        self._cpu_cores = psutil.cpu_times(percpu=True)
        try:
            self._network()
        except Exception:
            self._network_before = None

    def collect(self) -> HostFields:
        """Node figures as NodeMetrics fields (without node_id, timestamp and agent).

        Each source is read on its own: one that raises is counted in ``problems`` as
        ``<source>_unreadable`` and its fields are left out (null), the others are published.
        """
        fields: HostFields = {"memory_cgroup_enabled": self._memory_cgroup}
        for source, read in (
            ("cpu", self._cpu),
            ("memory", self._memory),
            ("disk", self._disk),
            ("network", self._network),
            ("load", self._load),
            ("sensors", self._sensor_readings),
        ):
            try:
                fields.update(read())
            except Exception as exc:
                self.problems.count(f"{source}_unreadable", f"{type(exc).__name__}: {exc}", with_traceback=True)
        return fields

    def _cpu(self) -> HostFields:
        # Both lines are read: the kernel rounds each line of /proc/stat to ticks on its own, so the
        # ``cpu`` line is not the sum of the ``cpuN`` lines (a 0.75 % interval reads 0.50 % summed).
        total = psutil.cpu_times()
        cores = psutil.cpu_times(percpu=True)
        cpu_percent = procfs.busy_percent(self._cpu_total, total)
        per_core = [procfs.busy_percent(before, after) for before, after in zip(self._cpu_cores, cores, strict=False)]
        self._cpu_total, self._cpu_cores = total, cores
        return {"cpu_percent": cpu_percent, "cpu_per_core": per_core, "cpu_count": len(cores)}

    def _memory(self) -> HostFields:
        memory = psutil.virtual_memory()
        used = memory.total - memory.available
        swap = psutil.swap_memory()
        return {
            "memory_percent": used / memory.total * 100.0 if memory.total else 0.0,
            "memory_used_mb": used / MIB,
            "memory_total_mb": memory.total / MIB,
            "memory_available_mb": memory.available / MIB,
            "swap_percent": swap.used / swap.total * 100.0 if swap.total else 0.0,
            "swap_used_mb": swap.used / MIB,
            "swap_total_mb": swap.total / MIB,
        }

    def _disk(self) -> HostFields:
        disk = psutil.disk_usage(str(self.paths.disk))
        return {
            "disk_percent": disk.used / (disk.used + disk.free) * 100.0 if disk.used + disk.free else 0.0,
            "disk_used_gb": disk.used / GIB,
            "disk_total_gb": disk.total / GIB,
        }

    def _network(self) -> HostFields:
        text = read_text(self.paths.net_dev)
        sent, recv = procfs.network_totals(text, self._physical)
        now = self._clock()
        before, self._network_before = self._network_before, (now, sent, recv)
        seconds = now - before[0] if before else 0.0
        return {
            "network_bytes_sent": sent,
            "network_bytes_recv": recv,
            "network_sent_rate": counter_rate(before[1] if before else None, sent, seconds),
            "network_recv_rate": counter_rate(before[2] if before else None, recv, seconds),
        }

    def _physical(self, interface: str) -> bool:
        """Counted in the node's totals: a device behind it, by sysfs; by name where sysfs cannot say."""
        physical = sysfs.physical_interface(self.paths.sys, interface)
        return procfs.is_counted_interface(interface) if physical is None else physical

    def _load(self) -> HostFields:
        loads = _optional(procfs.parse_loadavg, read_optional(self.paths.proc / "loadavg"))
        return {
            "load_1": loads[0] if loads else None,
            "load_5": loads[1] if loads else None,
            "load_15": loads[2] if loads else None,
            "uptime_seconds": _optional(procfs.parse_uptime, read_optional(self.paths.proc / "uptime")),
        }

    def _sensor_readings(self) -> HostFields:
        return {
            "cpu_freq_mhz": self._sensors.cpu_freq_mhz(),
            "temperature_c": self._sensors.temperature_c(),
            "under_voltage": self._sensors.under_voltage(),
        }


def _optional(parse: Any, text: str | None) -> Any:
    if text is None:
        return None
    try:
        return parse(text)
    except (ValueError, IndexError):
        return None
