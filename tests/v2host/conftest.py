"""The cgroup v2 host suite (``make v2host``): one VM, booted once per kernel command line.

A module may set ``KERNEL_APPEND`` (e.g. ``cgroup_disable=memory``, as Raspberry Pi OS ships);
modules are ordered so the default boot runs first and each reboot happens once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.v2_host import Guest, require_v2_host

HERE = Path(__file__).parent


def _append(item: pytest.Item) -> str:
    return str(getattr(item.module, "KERNEL_APPEND", "")) if isinstance(item, pytest.Function) else ""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.v2host)
    # Stable: everything else keeps its order; this suite comes last, default boot first.
    items.sort(key=lambda item: (item.get_closest_marker("v2host") is not None, _append(item)))


@pytest.fixture(scope="module")
def guest(request: pytest.FixtureRequest) -> Iterator[Guest]:
    require_v2_host()
    running = Guest(kernel_append=str(getattr(request.module, "KERNEL_APPEND", "")))
    running.start()
    yield running
    running.client.close()
