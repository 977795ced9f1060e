"""Container stats read straight from the host's cgroup filesystem, shaped like the Engine API's.

The Docker daemon answers a stats request by reading a handful of cgroup files (through
containerd and the container's shim), /proc/stat and the container's network counters, spending
milliseconds of CPU per container. Reading the same files ourselves through the host root mount
costs the daemon nothing. The result has the shape of ``GET /containers/{id}/stats`` so the
``docker stats`` formulas (agent.docker_stats) apply unchanged; each input is the one the daemon
uses (moby daemon/stats_unix.go, containerd cgroups):

* CPU: cgroup v1 ``cpuacct.usage``; v2 ``cpu.stat`` ``usage_usec`` x 1000. System, read right after
  it: the first seven fields of the ``cpu`` line of /proc/stat x 1e9 / CLK_TCK; online CPUs: the
  ``cpuN`` lines.
* Memory: v1 ``memory.usage_in_bytes``, ``memory.limit_in_bytes``, ``memory.stat``; v2
  ``memory.current``, ``memory.max``, ``memory.stat``. A limit above MemTotal is reported as
  MemTotal. No memory controller (Raspberry Pi OS default): no memory stats, as the daemon.
* Block I/O: v1 ``blkio.io_service_bytes_recursive`` when the CFQ files have entries, else
  ``blkio.throttle.io_service_bytes``; v2 ``io.stat`` rbytes/wbytes per device.
* PIDs: ``pids.current``. Network: /proc/<pid>/net/dev of the container's first process, every
  interface but ``lo``; nothing for ``--network host``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent import procfs
from agent.docker_stats import EngineStats
from agent.files import read_bytes, read_text

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_V1_CONTROLLERS = ("cpuacct", "memory", "blkio", "pids")
_MAX_SEARCH_DEPTH = 4


@dataclass(frozen=True, slots=True)
class CgroupLocation:
    """Where one container's cgroup lives, and the files one sample reads, resolved once."""

    version: int
    dirs: dict[str, Path]
    files: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, version: int, dirs: dict[str, Path]) -> CgroupLocation:
        def file(controller: str, name: str) -> str | None:
            directory = dirs.get("unified" if version == 2 else controller)
            return str(directory / name) if directory is not None else None

        if version == 2:
            names = {
                "cpu": ("", "cpu.stat"),
                "memory": ("", "memory.current"),
                "limit": ("", "memory.max"),
                "memory_stat": ("", "memory.stat"),
                "io": ("", "io.stat"),
                "pids": ("", "pids.current"),
            }
        else:
            names = {
                "cpu": ("cpuacct", "cpuacct.usage"),
                "memory": ("memory", "memory.usage_in_bytes"),
                "limit": ("memory", "memory.limit_in_bytes"),
                "memory_stat": ("memory", "memory.stat"),
                "throttle": ("blkio", "blkio.throttle.io_service_bytes"),
                "pids": ("pids", "pids.current"),
            }
            blkio = dirs.get("blkio")
            if blkio is not None and (blkio / "blkio.io_serviced_recursive").exists():  # CFQ accounting present
                names |= {"cfq_serviced": ("blkio", "blkio.io_serviced_recursive"),
                          "cfq_bytes": ("blkio", "blkio.io_service_bytes_recursive")}  # fmt: skip
        files = {key: path for key, (controller, name) in names.items() if (path := file(controller, name))}
        return cls(version, dirs, files)

    def dir(self, controller: str) -> Path | None:
        return self.dirs.get("unified" if self.version == 2 else controller)


def _optional_int(path: str | None) -> int | None:
    """An integer file, or None if absent (no controller); 'max' means no limit."""
    if path is None:
        return None
    try:
        data = read_bytes(path).strip()
    except FileNotFoundError:
        return None
    return None if data == b"max" else int(data)


_INACTIVE_KEYS = (b"inactive_file ", b"total_inactive_file ")


def inactive_file(memory_stat: bytes) -> dict[str, int]:
    """The only memory.stat entries the formula uses: inactive_file and (v1) total_inactive_file."""
    found = {}
    for line in memory_stat.split(b"\n"):
        if line.startswith(_INACTIVE_KEYS):
            key, _, value = line.partition(b" ")
            found[key.decode()] = int(value)
    return found


def _flat_keyed(text: str) -> dict[str, int]:
    """'key value' lines (memory.stat, cpu.stat)."""
    values = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value:
            values[key] = int(value)
    return values


def system_cpu_sample(stat_text: str) -> tuple[int, int]:
    """(system_cpu_usage in ns, online CPUs) from /proc/stat, as the daemon computes them."""
    lines = stat_text.splitlines()
    fields = lines[0].split()[1:8]  # user nice system idle iowait irq softirq
    ticks = sum(int(v) for v in fields)
    online = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    return ticks * 1_000_000_000 // _CLOCK_TICKS, online


def parse_blkio_v1(text: str) -> list[dict[str, Any]]:
    """blkio.*io_service_bytes* lines 'major:minor Op value' (the 'Total n' line skipped)."""
    entries = []
    for line in text.splitlines():
        fields = line.replace(":", " ").split()
        if len(fields) == 4:
            entries.append({"major": int(fields[0]), "minor": int(fields[1]), "op": fields[2], "value": int(fields[3])})
    return entries


def parse_io_stat_v2(text: str) -> list[dict[str, Any]]:
    """io.stat lines 'major:minor rbytes=.. wbytes=.. ...' as the daemon's read/write entries."""
    entries = []
    for line in text.splitlines():
        device, *pairs = line.split()
        major, _, minor = device.partition(":")
        values = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
        for op, key in (("read", "rbytes"), ("write", "wbytes")):
            entries.append({"major": int(major), "minor": int(minor), "op": op, "value": int(values.get(key, 0))})
    return entries


def container_networks(net_dev_text: str) -> dict[str, dict[str, int]]:
    """Per-interface counters of a container's network namespace, loopback excluded."""
    return {
        name: {"rx_bytes": rx, "tx_bytes": tx}
        for name, (rx, tx) in procfs.parse_net_dev(net_dev_text).items()
        if name != "lo"
    }


class CgroupReader:
    """Reads containers' stats from ``{sys_root}/fs/cgroup`` and ``{proc_root}``."""

    def __init__(self, sys_root: Path, proc_root: Path) -> None:
        self.root = sys_root / "fs" / "cgroup"
        self.proc = proc_root
        self.version = 2 if (self.root / "cgroup.controllers").exists() else 1
        meminfo = read_text(proc_root / "meminfo").split()
        self.mem_total = int(meminfo[meminfo.index("MemTotal:") + 1]) * 1024

    @property
    def usable(self) -> bool:
        """Whether the host's cgroup hierarchy is visible here at all."""
        return self.root.is_dir() and any(self.root.iterdir())

    # -- finding a container's cgroup ------------------------------------------------------------

    def locate(self, container_id: str, pid: int, cgroup_parent: str = "") -> CgroupLocation | None:
        """The container's cgroup directories, or None if they are not visible from here.

        A directory is accepted only if it exists and its path names the full container id (a
        reused pid would name another container). Membership cannot be checked through
        cgroup.procs: from inside a container it lists only the pids of the reader's namespace.
        """
        try:
            lines = read_text(self.proc / str(pid) / "cgroup").splitlines()
        except OSError:
            lines = []
        if self.version == 1:
            return self._locate_v1(lines, container_id)
        return self._locate_v2(lines, container_id, cgroup_parent)

    def _locate_v1(self, lines: list[str], container_id: str) -> CgroupLocation | None:
        dirs = {}
        for line in lines:
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(","):
                if controller in _V1_CONTROLLERS:
                    candidate = self.root / controller / path.lstrip("/")
                    if not candidate.is_dir():
                        candidate = self.root / controllers / path.lstrip("/")
                    dirs[controller] = candidate
        cpuacct = dirs.get("cpuacct")
        if cpuacct is None or not _is_theirs(cpuacct, container_id):
            return None
        return CgroupLocation.of(1, {c: d for c, d in dirs.items() if _is_theirs(d, container_id)})

    def _locate_v2(self, lines: list[str], container_id: str, parent: str) -> CgroupLocation | None:
        path = next((line[3:] for line in lines if line.startswith("0::")), "")
        candidates = []
        if path and not path.startswith("/.."):  # not relative to a private cgroup namespace of ours
            candidates.append(self.root / path.lstrip("/"))
        candidates += [
            self.root / "system.slice" / f"docker-{container_id}.scope",
            self.root / "docker" / container_id,
        ]
        if parent.endswith(".slice") and "/" not in parent:  # the systemd driver: a slice name, no path
            candidates.append(self.root / expand_slice(parent) / f"docker-{container_id}.scope")
        elif parent:
            candidates.append(self.root / parent.strip("/") / container_id)
        for candidate in candidates:
            if _is_theirs(candidate, container_id):
                return CgroupLocation.of(2, {"unified": candidate})
        found = _search(self.root, {container_id, f"docker-{container_id}.scope"}, _MAX_SEARCH_DEPTH)
        return CgroupLocation.of(2, {"unified": found}) if found is not None else None

    # -- reading ---------------------------------------------------------------------------------

    def system_cpu(self) -> tuple[int, int]:
        """(system_cpu_usage in ns, online CPUs) now, from the host's /proc/stat."""
        return system_cpu_sample(read_text(self.proc / "stat"))

    def read(self, location: CgroupLocation, pid: int, host_network: bool) -> EngineStats:
        """One stats object in the Engine API's shape; OSError if the cgroup is gone.

        The system CPU is read right after the container's usage, as the daemon does: CPU % is the
        ratio of their changes, so any time between the two readings (API calls on a slow host)
        would count as idle time of the container.
        """
        files = location.files
        if location.version == 1:
            cpu = int(read_bytes(files["cpu"]))
        else:
            cpu = _flat_keyed(read_bytes(files["cpu"]).decode())["usage_usec"] * 1000
        system_usage, online = self.system_cpu()
        memory: dict[str, Any] = {}
        if (usage := _optional_int(files.get("memory"))) is not None:
            limit = _optional_int(files.get("limit"))
            memory = {
                "usage": usage,
                "limit": min(limit if limit is not None else 2**64 - 1, self.mem_total),  # as the daemon clamps
                "stats": inactive_file(read_bytes(files["memory_stat"])),
            }
        stats: EngineStats = {
            "read": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "cpu_stats": {"cpu_usage": {"total_usage": cpu}, "system_cpu_usage": system_usage, "online_cpus": online},
            "memory_stats": memory,
            "blkio_stats": {"io_service_bytes_recursive": self._block_io(location)},
            "pids_stats": {"current": pids} if (pids := _optional_int(files.get("pids"))) is not None else {},
        }
        if not host_network:  # a gone first process raises: the caller falls back to the API
            stats["networks"] = container_networks(read_bytes(f"{self.proc}/{pid}/net/dev").decode("ascii", "replace"))
        return stats

    @staticmethod
    def _block_io(location: CgroupLocation) -> list[dict[str, Any]]:
        files = location.files
        if location.version == 2:
            try:
                return parse_io_stat_v2(read_bytes(files["io"]).decode())
            except FileNotFoundError:
                return []
        if "cfq_bytes" in files:  # containerd: CFQ files when they have entries, else the throttle file
            counted = parse_blkio_v1(read_bytes(files["cfq_serviced"]).decode())
            service_bytes = parse_blkio_v1(read_bytes(files["cfq_bytes"]).decode())
            if counted or service_bytes:
                return service_bytes
        throttle = files.get("throttle")
        return parse_blkio_v1(read_bytes(throttle).decode()) if throttle is not None else []


def expand_slice(slice_name: str) -> str:
    """Where systemd puts a slice: each dash opens a level ("a-b.slice" is "a.slice/a-b.slice")."""
    stem = slice_name.removesuffix(".slice")
    if stem in ("", "-") or "/" in stem or ".." in stem:  # the root slice, or not a slice name
        return ""
    parts = stem.split("-")
    return "/".join("-".join(parts[: i + 1]) + ".slice" for i in range(len(parts)))


def _is_theirs(directory: Path, container_id: str) -> bool:
    """An existing cgroup directory whose path names this container."""
    return container_id in directory.name and directory.is_dir()


def _search(root: Path, names: set[str], depth: int) -> Path | None:
    """Breadth-first search for a directory called one of ``names`` (custom cgroup parents)."""
    level = [root]
    for _ in range(depth):
        following = []
        for directory in level:
            try:
                with os.scandir(directory) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            if entry.name in names:
                                return Path(entry.path)
                            following.append(Path(entry.path))
            except OSError:
                continue
        level = following
    return None
