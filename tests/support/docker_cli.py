"""The docker CLI's size strings (go-units), both ways: format our figures, parse `docker stats` output."""

from __future__ import annotations

import re

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
