"""Settings from environment variables: a pydantic model whose fields are read from ``OTTO_*``.

What pydantic-settings does for our flat settings, in a page, because importing pydantic-settings
costs the agent 4.5 MiB of resident memory (it pulls in asyncio, dotenv and its source machinery)
and the agent must fit a 512 MB Pi Zero next to the containers it watches. Each field ``name`` is
read from ``OTTO_NAME`` in any letter case; an empty variable counts as unset (Compose's
``${VAR:-}`` passes "" for a line left out of .env); values are strings that pydantic converts in
its lax mode (numbers, booleans, paths, literals, durations through their own validators).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import ClassVar, Self

from pydantic import BaseModel


class EnvSettings(BaseModel):
    """A settings class; ``from_env()`` builds it from the environment, ``Cls(**values)`` from values."""

    env_prefix: ClassVar[str] = "OTTO_"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """The settings the environment gives (pydantic.ValidationError for a bad value)."""
        given = {key.upper(): value for key, value in (os.environ if environ is None else environ).items() if value}
        prefix = cls.env_prefix.upper()
        values = {name: given[prefix + name.upper()] for name in cls.model_fields if prefix + name.upper() in given}
        return cls.model_validate(values)
