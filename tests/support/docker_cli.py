"""The docker CLI's size strings (go-units), both ways: format our figures, parse `docker stats` output."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest

_BINARY = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
_DECIMAL = ["B", "kB", "MB", "GB", "TB", "PB"]


def _scaled(value: float, step: int, units: list[str], digits: int) -> str:
    unit = 0
    while value >= step and unit < len(units) - 1:
        value /= step
        unit += 1
    return f"{value:.{digits}g}{units[unit]}"


def bytes_size(value: float) -> str:
    """go-units BytesSize: binary units, 4 significant digits (MEM USAGE / LIMIT)."""
    return _scaled(value, 1024, _BINARY, 4)


def human_size(value: float) -> str:
    """go-units HumanSizeWithPrecision(x, 3): decimal units (NET I/O, BLOCK I/O)."""
    return _scaled(value, 1000, _DECIMAL, 3)


_SIZE = re.compile(r"^\s*([0-9.e+]+)\s*([A-Za-z]*)\s*$")
_FACTORS = {u: 1024**i for i, u in enumerate(_BINARY)} | {u: 1000**i for i, u in enumerate(_DECIMAL)}


def parse_size(text: str) -> float:
    """Bytes from a go-units string such as '15.02MiB' or '1.19MB'."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r}")
    return float(match.group(1)) * _FACTORS[match.group(2) or "B"]


def parse_pair(text: str) -> tuple[float, float]:
    """'a / b' size pairs of the MemUsage, NetIO and BlockIO columns."""
    left, right = text.split(" / ")
    return parse_size(left), parse_size(right)


def parse_percent(text: str) -> float:
    return float(text.rstrip("%"))


MIB = 2**20


def assert_like_docker_stats(
    ours: Mapping[str, Any], row: Mapping[str, str], label: str, *, cpu_points: float = 5.0
) -> None:
    """Every column of a ``docker stats --format '{{json .}}'`` row against ContainerMetrics fields.

    ``cpu_points`` percentage points for CPU (two windows of a CFS-capped container never match
    exactly); 5 % for sizes, or 512 KiB for the small ones: a container's active
    and inactive file pages move by a few hundred KiB between two samples a second apart. Callers
    check first that each container holds a known resident size, so the margin cannot hide a zero.
    """
    assert ours["cpu_percent"] == pytest.approx(parse_percent(row["CPUPerc"]), abs=cpu_points), label
    used, limit = parse_pair(row["MemUsage"])
    assert ours["memory_usage_mb"] * MIB == pytest.approx(used, rel=0.05, abs=512 * 1024), label
    assert ours["memory_limit_mb"] * MIB == pytest.approx(limit, rel=0.005), label
    assert ours["memory_percent"] == pytest.approx(parse_percent(row["MemPerc"]), rel=0.05, abs=0.01), label
    rx, tx = parse_pair(row["NetIO"])
    assert ours["network_rx_bytes"] == pytest.approx(rx, rel=0.05, abs=1000), label
    assert ours["network_tx_bytes"] == pytest.approx(tx, rel=0.05, abs=1000), label
    read, write = parse_pair(row["BlockIO"])
    assert ours["block_read_bytes"] == pytest.approx(read, rel=0.05, abs=1000), label
    assert ours["block_write_bytes"] == pytest.approx(write, rel=0.05, abs=1000), label
    assert ours["pids"] == int(row["PIDs"]), label
