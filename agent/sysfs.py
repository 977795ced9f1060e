"""Readers for the host's sysfs: SoC temperature, Raspberry Pi under-voltage, cpufreq, memory cgroup.

Each takes the sysfs root (``/sys``, or ``{host_root}/sys``) and returns None when the source is
absent, so they are safe on any machine.
"""

from __future__ import annotations

from pathlib import Path


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def soc_temperature_c(sys_root: Path) -> float | None:
    """SoC temperature in degrees C from the thermal zone of type ``cpu-thermal`` (Pi), else zone 0."""
    zones = sorted((sys_root / "class" / "thermal").glob("thermal_zone*"))
    chosen = next((z for z in zones if "cpu" in (_read(z / "type") or "")), zones[0] if zones else None)
    if chosen is None:
        return None
    raw = _read(chosen / "temp")
    try:
        return int(raw) / 1000.0 if raw else None
    except ValueError:
        return None


def under_voltage(sys_root: Path) -> bool | None:
    """The Raspberry Pi under-voltage alarm (hwmon ``rpi_volt`` ``in0_lcrit_alarm``); None elsewhere."""
    for hwmon in sorted((sys_root / "class" / "hwmon").glob("hwmon*")):
        if _read(hwmon / "name") == "rpi_volt":
            alarm = _read(hwmon / "in0_lcrit_alarm")
            return None if alarm is None else alarm == "1"
    return None


def cpu_freq_mhz(sys_root: Path) -> float | None:
    """Mean of the cpufreq policies' ``scaling_cur_freq`` (kHz) in MHz: the requested clock."""
    values: list[int] = []
    for policy in sorted((sys_root / "devices" / "system" / "cpu" / "cpufreq").glob("policy*")):
        raw = _read(policy / "scaling_cur_freq")
        if raw and raw.isdigit():
            values.append(int(raw))
    return sum(values) / len(values) / 1000.0 if values else None


def memory_cgroup_enabled(sys_root: Path, proc_root: Path) -> bool | None:
    """Whether the kernel's memory cgroup controller is enabled.

    cgroup v2: ``memory`` in the root's ``cgroup.controllers``. cgroup v1: the ``enabled`` column
    of the memory row in ``/proc/cgroups`` (not used on v2: 6.12 kernels drop the row there).
    """
    controllers = _read(sys_root / "fs" / "cgroup" / "cgroup.controllers")
    if controllers is not None:
        return "memory" in controllers.split()
    table = _read(proc_root / "cgroups")
    if table is None:
        return None
    for line in table.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[0] == "memory":
            return fields[3] == "1"
    return False
