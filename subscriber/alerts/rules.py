"""Alert rules: defaults that work with no configuration, and a validated TOML file to change them.

``OTTO_ALERTS_FILE`` names the file (see docs/alerts.md and alerts.example.toml); any key left out
keeps its default, an unknown key or a wrong value is a configuration error that names it.
Durations are ``"30s"``, ``"5m"``, ``"2h"``, ``"1d"`` or seconds.
"""

from __future__ import annotations

import fnmatch
import tomllib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from subscriber.settings import Duration


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    enabled: bool = True


class NodeOffline(_Rule):
    """The node's last will (or its explicit offline status), or silence beyond the stale period."""

    for_: Duration = Field(timedelta(seconds=20), alias="for", description="Offline or stale this long first.")


class Threshold(_Rule):
    """Fires when the value stays above ``above`` for ``for``; resolves once it is below ``clear_below``."""

    above: float
    clear_below: float
    for_: Duration = Field(timedelta(0), alias="for")

    @model_validator(mode="after")
    def _hysteresis(self) -> Threshold:
        if self.clear_below > self.above:
            raise ValueError("clear_below must not be above 'above'")
        return self


class ContainerExited(_Rule):
    """A container exited with a non-zero status that nobody asked for (not docker stop, not OOM)."""

    stable_after: Duration = Field(
        timedelta(seconds=30), description="Resolved once the container has run again this long (or is removed)."
    )


class RestartLoop(_Rule):
    """A container died on its own ``restarts`` times within ``within``."""

    restarts: int = Field(3, ge=2, le=10_000)
    within: Duration = timedelta(minutes=5)


class Quiet(_Rule):
    """Fires on the fact; resolves after ``quiet_for`` without a repeat (or by its own resolution)."""

    quiet_for: Duration = timedelta(minutes=10)


class CertificateExpiry(_Rule):
    """The broker's TLS certificate (as served to nodes) expires within ``days``; resolved once renewed."""

    days: float = Field(21.0, gt=0, le=365)


class Mute(BaseModel):
    """Alerts matching every given pattern (shell globs) are recorded but not notified."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str = "*"
    node: str = "*"
    container: str = "*"
    until: AwareDatetime | None = Field(None, description="Muted until then (with a time zone); forever if absent.")

    def matches(self, rule: str, node: str, container: str, now: datetime) -> bool:
        if self.until is not None and now >= self.until:
            return False
        return all(
            fnmatch.fnmatchcase(value, pattern)
            for value, pattern in ((rule, self.rule), (node, self.node), (container, self.container))
        )


class AlertRules(BaseModel):
    """Every rule, with its defaults; see docs/alerts.md."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    node_offline: NodeOffline = NodeOffline()
    temperature: Threshold = Threshold(above=80.0, clear_below=75.0, for_=timedelta(minutes=1))
    under_voltage: _Rule = _Rule()
    disk: Threshold = Threshold(above=90.0, clear_below=85.0, for_=timedelta(minutes=1))
    memory: Threshold = Threshold(above=90.0, clear_below=85.0, for_=timedelta(minutes=5))
    container_exited: ContainerExited = ContainerExited()
    restart_loop: RestartLoop = RestartLoop()
    unhealthy: _Rule = _Rule()
    oom_killed: ContainerExited = ContainerExited()
    agent_dropping: Quiet = Quiet()
    broker_certificate: CertificateExpiry = CertificateExpiry()
    repeat: Duration = Field(timedelta(0), description="Send a firing alert again this often; 0: once.")
    mute: tuple[Mute, ...] = ()

    def muted(self, rule: str, node: str, container: str, now: datetime) -> bool:
        return any(m.matches(rule, node, container, now) for m in self.mute)


class RulesError(Exception):
    """The alerts file cannot be read or does not validate; the message says where."""


def load_rules(path: Path | None) -> AlertRules:
    """The rules in ``path`` over the defaults; the defaults alone when ``path`` is None."""
    if path is None:
        return AlertRules()
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{path} is not valid TOML: {exc}") from None
    try:
        return AlertRules.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise RulesError(f"{path}: {where}: {first['msg']} ({exc.error_count()} error(s))") from None
