"""Print the pip requirements of the integrations Home Assistant loads at start, plus those named.

Walks each integration's manifest dependencies, starting from the bootstrap's core, default and
stage-0 sets and every entity platform (the frontend's service list imports them all), so the
image can run Home Assistant with --skip-pip and no download at test time.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from homeassistant import bootstrap, components

COMPONENTS = Path(components.__file__).parent


def manifest(domain: str) -> dict[str, object]:
    path = COMPONENTS / domain / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _entity_platform(path: Path) -> bool:
    return json.loads(path.read_text()).get("integration_type") == "entity"


def main(extra: list[str]) -> None:
    pending = [
        *bootstrap.CORE_INTEGRATIONS,
        *bootstrap.DEFAULT_INTEGRATIONS,
        *bootstrap.LOGGING_AND_HTTP_DEPS_INTEGRATIONS,
        *bootstrap.FRONTEND_INTEGRATIONS,
        *extra,
        *(path.parent.name for path in COMPONENTS.glob("*/manifest.json") if _entity_platform(path)),
    ]
    seen: set[str] = set()
    requirements: set[str] = set()
    while pending:
        domain = pending.pop()
        if domain in seen:
            continue
        seen.add(domain)
        info = manifest(domain)
        requirements.update(info.get("requirements", []))  # type: ignore[arg-type]
        pending.extend(info.get("dependencies", []))  # type: ignore[arg-type]
    print("\n".join(sorted(requirements)))


if __name__ == "__main__":
    main(sys.argv[1:])
