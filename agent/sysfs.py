"""Readers for the host's sysfs: SoC temperature, Raspberry Pi under-voltage, cpufreq, memory cgroup.

Each takes the sysfs root (``/sys``, or ``{host_root}/sys``) and returns None when the source is
absent, so they are safe on any machine. ``Sensors.find`` locates the sensor files once (devices
do not come and go while the agent runs); each cycle then only reads their values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.files import read_optional


@dataclass(frozen=True, slots=True)
class Sensors:
    """The sysfs files behind temperature_c, under_voltage and cpu_freq_mhz, located once."""

    temperature: Path | None
    under_voltage_alarm: Path | None
    cpu_frequencies: tuple[Path, ...]

    @classmethod
    def find(cls, sys_root: Path) -> Sensors:
        # The SoC's thermal zone is of type cpu-thermal on a Pi; elsewhere the first zone.
        zones = sorted((sys_root / "class" / "thermal").glob("thermal_zone*"))
        zone = next((z for z in zones if "cpu" in (read_optional(z / "type") or "")), zones[0] if zones else None)
        # The Raspberry Pi's under-voltage alarm: hwmon named rpi_volt, in0_lcrit_alarm.
        hwmons = sorted((sys_root / "class" / "hwmon").glob("hwmon*"))
        rpi_volt = next((h for h in hwmons if read_optional(h / "name") == "rpi_volt"), None)
        policies = sorted((sys_root / "devices" / "system" / "cpu" / "cpufreq").glob("policy*"))
        return cls(
            temperature=zone / "temp" if zone is not None else None,
            under_voltage_alarm=rpi_volt / "in0_lcrit_alarm" if rpi_volt is not None else None,
            cpu_frequencies=tuple(policy / "scaling_cur_freq" for policy in policies),
        )

    def temperature_c(self) -> float | None:
        """SoC temperature in degrees C (the zone's temp is in millidegrees)."""
        raw = read_optional(self.temperature) if self.temperature is not None else None
        try:
            return int(raw) / 1000.0 if raw else None
        except ValueError:
            return None

    def under_voltage(self) -> bool | None:
        """True while the Pi reports under-voltage; None if not a Pi."""
        alarm = read_optional(self.under_voltage_alarm) if self.under_voltage_alarm is not None else None
        return None if alarm is None else alarm == "1"

    def cpu_freq_mhz(self) -> float | None:
        """Mean of the cpufreq policies' ``scaling_cur_freq`` (kHz) in MHz: the requested clock."""
        values = [int(raw) for path in self.cpu_frequencies if (raw := read_optional(path)) and raw.isdigit()]
        return sum(values) / len(values) / 1000.0 if values else None


def physical_interface(sys_root: Path, name: str) -> bool | None:
    """Whether a network interface has a device behind it (NIC, Wi-Fi, USB); None if sysfs does not list it.

    Virtual interfaces (loopback, bridges, veth, WireGuard, tun/tap, VXLAN) have no ``device``.
    """
    interface = sys_root / "class" / "net" / name
    if "/" in name or not interface.is_dir():
        return None
    return (interface / "device").exists()


def memory_cgroup_enabled(sys_root: Path, proc_root: Path) -> bool | None:
    """Whether the kernel's memory cgroup controller is enabled.

    cgroup v2: ``memory`` in the root's ``cgroup.controllers``. cgroup v1: the ``enabled`` column
    of the memory row in ``/proc/cgroups`` (not used on v2: 6.12 kernels drop the row there).
    """
    controllers = read_optional(sys_root / "fs" / "cgroup" / "cgroup.controllers")
    if controllers is not None:
        return "memory" in controllers.split()
    table = read_optional(proc_root / "cgroups")
    if table is None:
        return None
    for line in table.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[0] == "memory":
            return fields[3] == "1"
    return False
