"""Node readers on fixture trees: a Raspberry Pi 4 snapshot and a live capture of the CI VM."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from agent import procfs, sysfs
from agent.collector import MetricsCollector
from agent.container_collector import ContainerCollector
from agent.host_collector import HostCollector, HostPaths
from agent.problems import Problems
from contract import ContainerMetrics
from contract.units import GIB
from tests.support.messages import container

HOSTS = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"
PI = HOSTS / "rpi4-bookworm"
VM = HOSTS / "x86-vm-cgroup1"


@pytest.fixture(autouse=True)
def _restore_procfs_path() -> Iterator[None]:
    saved = psutil.PROCFS_PATH
    yield
    psutil.PROCFS_PATH = saved


def host_copy(tree: Path, tmp_path: Path) -> Path:
    root = tmp_path / tree.name
    shutil.copytree(tree, root)
    return root


def advance_time(root: Path) -> None:
    """Replace the first /proc/stat sample with the one taken an interval later."""
    (root / "proc" / "stat.later").replace(root / "proc" / "stat")


def meminfo_kb(root: Path) -> dict[str, int]:
    values = {}
    for line in (root / "proc" / "meminfo").read_text().splitlines():
        key, rest = line.split(":")
        values[key] = int(rest.split()[0])
    return values


# -- procfs parsers -----------------------------------------------------------------------------


def test_net_dev_excludes_loopback_and_container_interfaces() -> None:
    text = (PI / "proc" / "1" / "net" / "dev").read_text()
    parsed = procfs.parse_net_dev(text)
    assert parsed["eth0"] == (1234567890, 98765432)
    assert set(parsed) == {
        "lo", "eth0", "wlan0", "docker0", "veth0a1b2c3", "br-0123456789ab", "wg0", "tailscale0", "cni0", "vxlan.calico",
    }  # fmt: skip
    sent, recv = procfs.network_totals(text)  # by name: as where sysfs cannot say
    assert recv == 1234567890 + 5000  # eth0 + wlan0 only
    assert sent == 98765432 + 6000


def test_node_network_counts_interfaces_with_a_device_behind_them(tmp_path: Path) -> None:
    """VPN and overlay interfaces (WireGuard, Tailscale, CNI, VXLAN) carry traffic that also crosses eth0."""
    root = host_copy(PI, tmp_path)
    net = root / "sys/class/net"
    # A USB Ethernet adapter whose name no prefix list knows, and a virtual one named like a NIC.
    (net / "enx00e04c680001/device").mkdir(parents=True)
    (net / "eth1").mkdir()
    with (root / "proc/1/net/dev").open("a") as dev:
        dev.write("enx00e04c680001:    1000  1 0 0 0 0 0 0     2000  1 0 0 0 0 0 0\n")
        dev.write("  eth1:  9000000  1 0 0 0 0 0 0  9000000  1 0 0 0 0 0 0\n")
        dev.write("vpn-new:     7000  1 0 0 0 0 0 0     8000  1 0 0 0 0 0 0\n")  # not in this sysfs: by name
    m = HostCollector(HostPaths(root)).collect()
    assert m["network_bytes_recv"] == 1234567890 + 5000 + 1000 + 7000
    assert m["network_bytes_sent"] == 98765432 + 6000 + 2000 + 8000


@pytest.mark.parametrize(
    ("name", "counted"),
    [("eth0", True), ("wlan0", True), ("end0", True), ("lo", False), ("veth9f", False), ("docker0", False),
     ("docker_gwbridge", False), ("br-5f1", False), ("bridge0", True)],
)  # fmt: skip
def test_counted_interfaces(name: str, counted: bool) -> None:
    assert procfs.is_counted_interface(name) is counted


def test_loadavg_and_uptime() -> None:
    assert procfs.parse_loadavg((PI / "proc" / "loadavg").read_text()) == (0.52, 0.58, 0.59)
    assert procfs.parse_uptime((PI / "proc" / "uptime").read_text()) == 86400.51


def test_busy_percent_excludes_guest_and_counts_iowait_as_idle(tmp_path: Path) -> None:
    root = host_copy(PI, tmp_path)
    psutil.PROCFS_PATH = str(root / "proc")
    before = psutil.cpu_times(percpu=True)[0]
    advance_time(root)
    after = psutil.cpu_times(percpu=True)[0]
    # cpu0: +600 user (100 of them guest), +200 system, +200 idle, +100 guest: 800 busy of 1000.
    assert procfs.busy_percent(before, after) == pytest.approx(80.0)
    assert procfs.busy_percent(after, after) == 0.0


# -- sysfs readers ------------------------------------------------------------------------------


def test_raspberry_pi_sysfs() -> None:
    sensors = sysfs.Sensors.find(PI / "sys")
    assert sensors.temperature_c() == 51.121
    assert sensors.under_voltage() is True
    assert sensors.cpu_freq_mhz() == 1500.0
    # Pi OS default: cgroup v2 without the memory controller.
    assert sysfs.memory_cgroup_enabled(PI / "sys", PI / "proc") is False


def test_sysfs_readers_are_none_where_the_source_is_absent(tmp_path: Path) -> None:
    sensors = sysfs.Sensors.find(tmp_path)
    assert sensors.temperature_c() is None
    assert sensors.under_voltage() is None
    assert sensors.cpu_freq_mhz() is None
    assert sysfs.memory_cgroup_enabled(tmp_path, tmp_path) is None


def test_under_voltage_clear_and_thermal_zone_choice(tmp_path: Path) -> None:
    root = host_copy(PI, tmp_path)
    sensors = sysfs.Sensors.find(root / "sys")
    (root / "sys/class/hwmon/hwmon1/in0_lcrit_alarm").write_text("0\n")
    assert sensors.under_voltage() is False  # the value is read each time, the file found once
    (root / "sys/class/hwmon/hwmon1/in0_lcrit_alarm").write_text("1\n")
    assert sensors.under_voltage() is True
    # A board whose first zone is not the CPU: the cpu-thermal zone wins.
    zones = root / "sys/class/thermal"
    (zones / "thermal_zone0").rename(zones / "thermal_zone1")
    (zones / "thermal_zone0").mkdir()
    (zones / "thermal_zone0/type").write_text("battery\n")
    (zones / "thermal_zone0/temp").write_text("30000\n")
    assert sysfs.Sensors.find(root / "sys").temperature_c() == 51.121


def test_network_rates_between_readings_and_after_a_counter_reset(tmp_path: Path) -> None:
    root = host_copy(PI, tmp_path)
    net_dev = root / "proc" / "1" / "net" / "dev"
    now = [100.0]
    collector = HostCollector(HostPaths(root), clock=lambda: now[0])
    first = collector.collect()
    assert first["network_sent_rate"] is None
    assert first["network_recv_rate"] is None

    text = net_dev.read_text()
    net_dev.write_text(text.replace("1234567890", "1234587890").replace("98765432", "98770432"))  # eth0 +20,000/+5,000
    now[0] = 104.0
    second = collector.collect()
    assert second["network_recv_rate"] == 20_000 / 4
    assert second["network_sent_rate"] == 5_000 / 4

    net_dev.write_text(text.replace("1234567890", "0").replace("98765432", "800"))  # rebooted host: counters restart
    now[0] = 106.0
    third = collector.collect()
    assert third["network_recv_rate"] == (third["network_bytes_recv"] or 0) / 2
    assert third["network_sent_rate"] == (third["network_bytes_sent"] or 0) / 2


def test_memory_cgroup_v2_enabled_and_v1_table(tmp_path: Path) -> None:
    root = host_copy(PI, tmp_path)
    (root / "sys/fs/cgroup/cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    assert sysfs.memory_cgroup_enabled(root / "sys", root / "proc") is True
    # cgroup v1 host (the CI VM): no cgroup.controllers, the /proc/cgroups table decides.
    assert sysfs.memory_cgroup_enabled(tmp_path / "none", VM / "proc") is True


# -- the whole node collector -------------------------------------------------------------------


def test_host_collector_on_raspberry_pi_snapshot(tmp_path: Path) -> None:
    root = host_copy(PI, tmp_path)
    paths = HostPaths(root)
    assert paths.hostname() == "pi-kitchen"
    assert paths.net_dev == root / "proc" / "1" / "net" / "dev"
    collector = HostCollector(paths)
    advance_time(root)
    m = collector.collect()

    assert m["cpu_percent"] == pytest.approx(40.0)  # 1600 busy of 4000 ticks, guest not counted twice
    assert m["cpu_per_core"] == pytest.approx([80.0, 40.0, 25.0, 15.0])
    assert m["cpu_count"] == 4
    mem = meminfo_kb(root)
    assert m["memory_total_mb"] == mem["MemTotal"] / 1024
    assert m["memory_used_mb"] == (mem["MemTotal"] - mem["MemAvailable"]) / 1024 == 701.5859375
    assert m["memory_available_mb"] == mem["MemAvailable"] / 1024
    assert m["memory_percent"] == pytest.approx((3884316 - 3165892) / 3884316 * 100)
    assert m["swap_used_mb"] == 10.0
    assert m["swap_total_mb"] == 102396 / 1024
    assert m["swap_percent"] == pytest.approx(10240 / 102396 * 100)
    assert (m["load_1"], m["load_5"], m["load_15"]) == (0.52, 0.58, 0.59)
    assert m["uptime_seconds"] == 86400.51
    assert (m["network_bytes_recv"], m["network_bytes_sent"]) == (1234572890, 98771432)
    assert m["temperature_c"] == 51.121
    assert m["under_voltage"] is True
    assert m["cpu_freq_mhz"] == 1500.0
    assert m["memory_cgroup_enabled"] is False
    # Disk figures describe the filesystem holding the host root, as df shows it.
    st = os.statvfs(root)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    assert m["disk_total_gb"] == pytest.approx(st.f_blocks * st.f_frsize / GIB, rel=1e-3)
    assert m["disk_used_gb"] == pytest.approx(used / GIB, rel=1e-2)
    assert m["disk_percent"] == pytest.approx(used / (used + st.f_bavail * st.f_frsize) * 100, abs=0.5)


def test_host_collector_on_live_vm_capture(tmp_path: Path) -> None:
    root = host_copy(VM, tmp_path)
    collector = HostCollector(HostPaths(root))
    advance_time(root)
    m = collector.collect()

    def cpu_line(name: str) -> list[int]:
        return [int(v) for v in (VM / "proc" / name).read_text().splitlines()[0].split()[1:]]

    before, after = cpu_line("stat"), cpu_line("stat.later")
    delta = [a - b for a, b in zip(after, before, strict=True)]
    total = sum(delta) - delta[8] - delta[9]  # guest and guest_nice are inside user and nice
    idle = delta[3] + delta[4]
    assert m["cpu_percent"] == pytest.approx((total - idle) / total * 100)
    assert m["cpu_count"] == 2
    mem = meminfo_kb(root)
    assert m["memory_used_mb"] == (mem["MemTotal"] - mem["MemAvailable"]) / 1024
    assert m["memory_total_mb"] == mem["MemTotal"] / 1024
    assert m["swap_total_mb"] == 0.0
    sent, recv = procfs.network_totals((VM / "proc/1/net/dev").read_text())
    assert (m["network_bytes_sent"], m["network_bytes_recv"]) == (sent, recv)
    assert m["network_bytes_recv"] == 242572149  # eth0; lo and docker0 left out (ifb0/1 count but carry 0)


def test_collector_cpu_is_never_a_meaningless_first_zero(tmp_path: Path) -> None:
    """The baseline is taken at construction, so the first collect already averages an interval."""
    root = host_copy(PI, tmp_path)
    collector = HostCollector(HostPaths(root))
    advance_time(root)
    assert collector.collect()["cpu_percent"] == pytest.approx(40.0)
    assert collector.collect()["cpu_percent"] == 0.0  # same counters again: nothing happened in between


def test_missing_optional_files_give_none(tmp_path: Path) -> None:
    root = host_copy(PI, tmp_path)
    for name in ("loadavg", "uptime"):
        (root / "proc" / name).unlink()
    m = HostCollector(HostPaths(root)).collect()
    assert m["load_1"] is None
    assert m["uptime_seconds"] is None


def test_a_reading_that_raises_or_is_out_of_range_nulls_its_fields_only(tmp_path: Path) -> None:
    """statvfs on a vanished mount, a sensor gone mad: the node message is published all the same."""
    root = host_copy(PI, tmp_path)
    (root / "sys/class/thermal/thermal_zone0/temp").write_text("2000000000\n")  # 2,000,000 degrees C
    paths = HostPaths(root)
    paths.disk = root / "vanished-mount"
    problems = Problems()
    collector = MetricsCollector("pi", HostCollector(paths, problems), ContainerCollector(problems=problems), 5.0)
    node = collector.collect_node_metrics()
    assert node.temperature_c is None
    assert node.disk_percent is None
    assert node.disk_used_gb is None
    assert node.memory_total_mb > 0  # the other readings are there
    assert node.network_bytes_recv == 1234567890 + 5000
    assert node.agent.problems == {"disk_unreadable": 1, "nulled": 1}
    assert collector.collect_node_metrics().agent.problems == {"disk_unreadable": 2, "nulled": 2}


def test_a_batch_the_contract_refuses_costs_the_containers_not_the_cycle(tmp_path: Path) -> None:
    """More containers than one message may carry (10,000): the node message still goes out."""

    class Crowded(ContainerCollector):
        def collect(self) -> tuple[list[ContainerMetrics], str | None]:
            return [container(f"c{i}") for i in range(10_001)], None

    problems = Problems()
    collector = MetricsCollector("pi", HostCollector(HostPaths(host_copy(PI, tmp_path)), problems), Crowded(), 5.0)
    node, batch = collector.collect()
    assert node is not None
    assert batch.containers == []
    assert batch.error is not None
    assert batch.error.startswith("container metrics refused by the contract")
    assert node.agent.problems["containers_skipped"] == 1
