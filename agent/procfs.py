"""Pure parsers for the procfs files psutil does not cover the way we need."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Where sysfs cannot say (another network namespace's sysfs), interfaces left out by name:
#: loopback, container plumbing and tunnels, whose traffic is local or also crosses a physical one.
EXCLUDED_INTERFACES = frozenset({"lo"})
EXCLUDED_INTERFACE_PREFIXES = ("veth", "docker", "br-", "wg", "tailscale", "tun", "tap", "cni", "flannel", "vxlan")


def is_counted_interface(name: str) -> bool:
    """By name only: True for interfaces whose traffic counts toward the node's network totals."""
    return name not in EXCLUDED_INTERFACES and not name.startswith(EXCLUDED_INTERFACE_PREFIXES)


def parse_net_dev(text: str) -> dict[str, tuple[int, int]]:
    """``/proc/<pid>/net/dev`` as {interface: (bytes received, bytes sent)}."""
    counters: dict[str, tuple[int, int]] = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        fields = rest.split()
        if len(fields) < 9:
            continue
        counters[name.strip()] = (int(fields[0]), int(fields[8]))
    return counters


def network_totals(text: str, counted: Callable[[str], bool] = is_counted_interface) -> tuple[int, int]:
    """(bytes sent, bytes received) summed over the interfaces of a net/dev file that ``counted`` accepts."""
    sent = recv = 0
    for name, (rx, tx) in parse_net_dev(text).items():
        if counted(name):
            recv += rx
            sent += tx
    return sent, recv


def parse_loadavg(text: str) -> tuple[float, float, float]:
    """``/proc/loadavg`` as (1, 5, 15 minute) load averages."""
    one, five, fifteen = text.split(maxsplit=3)[:3]
    return float(one), float(five), float(fifteen)


def parse_uptime(text: str) -> float:
    """``/proc/uptime`` as seconds since boot."""
    return float(text.split(maxsplit=1)[0])


def busy_percent(previous: Any, current: Any) -> float:
    """Busy CPU % between two psutil ``scputimes`` readings of /proc/stat, as top computes it.

    Total excludes guest time (already inside user); idle includes iowait.
    """

    def totals(times: Any) -> tuple[float, float]:
        total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
        idle = times.idle + getattr(times, "iowait", 0.0)
        return total, idle

    total_before, idle_before = totals(previous)
    total_after, idle_after = totals(current)
    total_delta = total_after - total_before
    if total_delta <= 0:
        return 0.0
    busy_delta = total_delta - (idle_after - idle_before)
    return min(100.0, max(0.0, busy_delta / total_delta * 100.0))
