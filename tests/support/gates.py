"""What a test does when a real part it needs is missing: skip with the reason, or fail in CI."""

from __future__ import annotations

import os

import pytest


def skip_or_fail(problem: str | None, required_by: str, skip_reason: str) -> None:
    """Nothing if ``problem`` is None; else fail when ``required_by`` is set to 1 (CI), else skip."""
    if problem is None:
        return
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{required_by}=1 but {problem}", pytrace=False)
    pytest.skip(f"{skip_reason}; set {required_by}=1 to make this an error")
