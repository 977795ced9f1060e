"""Command-line plumbing shared by both programs: settings errors, logging, secret files."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import NoReturn, TypeVar

from pydantic import ValidationError

from common.env_settings import EnvSettings

SettingsT = TypeVar("SettingsT", bound=EnvSettings)

EXIT_CONFIG = 2


def describe_settings_error(exc: ValidationError, env_prefix: str) -> str:
    """One line naming the first offending environment variable and what is wrong with it."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) if first["loc"] else ""
    message = str(first["msg"]).removeprefix("Value error, ")
    if not field:  # a whole-model check names the variable in its own message
        return f"invalid configuration: {message}"
    name = f"{env_prefix}{field.upper()}"
    if first["type"] not in ("missing", "value_error", "assertion_error") and "input" in first:
        message += f" (got {str(first['input'])[:80]!r})"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"invalid configuration: {name}: {message}{more}"


def load_settings_or_exit(cls: type[SettingsT], program: str) -> SettingsT:
    """Build settings from the environment; on a bad value print one line and exit 2."""
    try:
        return cls.from_env()
    except ValidationError as exc:
        fail_config(program, describe_settings_error(exc, cls.env_prefix))


def fail_config(program: str, line: str) -> NoReturn:
    print(f"{program}: {line}", file=sys.stderr)
    raise SystemExit(EXIT_CONFIG)


def read_secret_file(path: Path) -> str:
    """The content of a Docker-secret style file, without the trailing newline."""
    return path.read_text(encoding="utf-8").rstrip("\r\n")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S%z",
        stream=sys.stderr,
        force=True,
    )


class RateLimitedLog:
    """Lets one log line through per ``period`` seconds per key; counts what it held back."""

    def __init__(self, logger: logging.Logger, period: float = 60.0) -> None:
        self._logger = logger
        self._period = period
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        self._log(key, logging.WARNING, message, args, with_traceback=False)

    def exception(self, key: str, message: str, *args: object) -> None:
        """An ERROR line with the traceback of the exception being handled (call from ``except``)."""
        self._log(key, logging.ERROR, message, args, with_traceback=True)

    def _log(self, key: str, level: int, message: str, args: tuple[object, ...], with_traceback: bool) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._period:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        held = self._suppressed.pop(key, 0)
        suffix = f" ({held} similar suppressed)" if held else ""
        self._logger.log(level, message + suffix, *args, exc_info=with_traceback)
