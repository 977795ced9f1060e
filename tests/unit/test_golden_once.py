"""The agent's whole ``--once`` output on the Raspberry Pi fixture host, against a golden file.

node_exporter's ``e2e-output.txt`` is the model: every field the agent publishes is compared, so a
field that appears, disappears, changes unit or moves is a visible diff, not a silent one. Fields
that depend on the moment or the machine are masked. After a deliberate change, regenerate with
``OTTO_UPDATE_GOLDEN=1 pytest tests/unit/test_golden_once.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.support.agent_process import run_program

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GOLDEN = FIXTURES / "golden" / "once-rpi4-bookworm.json"
MASK = "<volatile>"
#: Where they vary: the clock, this process, the build, and the filesystem the fixture lies on.
VOLATILE = {
    "node": ["timestamp", "disk_percent", "disk_used_gb", "disk_total_gb", "agent.version", "agent.arch",
             "agent.collect_seconds", "agent.rss_mb", "agent.cpu_percent"],
    "containers": ["timestamp", "error"],
}  # fmt: skip


def masked(document: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    for path in paths:
        *parents, leaf = path.split(".")
        where = document
        for parent in parents:
            where = where[parent]
        assert leaf in where, f"{path} is no longer published: update VOLATILE and the golden file"
        where[leaf] = MASK
    return document


def test_once_output_matches_the_golden_file(tmp_path: Path) -> None:
    result = run_program(
        "agent", "--once", "--interval", "0.2",
        OTTO_HOST_ROOT=str(FIXTURES / "hosts" / "rpi4-bookworm"),
        DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    node_line, containers_line = result.stdout.splitlines()
    output = {
        "node": masked(json.loads(node_line), VOLATILE["node"]),
        "containers": masked(json.loads(containers_line), VOLATILE["containers"]),
    }
    rendered = json.dumps(output, indent=2, sort_keys=True) + "\n"
    if os.environ.get("OTTO_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(rendered)
    assert rendered == GOLDEN.read_text()
