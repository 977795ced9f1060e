"""Readings the agent could not publish as read, and the rule that saves the rest of the message.

Docker accepts container names, image references and labels longer than the wire contract
allows, a sensor can report a value outside its field's range, and a reading can raise (statvfs
on a vanished mount, a thread that cannot start under a pids limit). None of these may cost the
cycle. ``build`` applies the rule, field by field, to the values the contract refuses:

* a string longer than its field allows is cut to the limit, ending in an ellipsis (``truncated``);
* a value the contract refuses, in a field that may be null, is published as null (``nulled``);
* anything else refuses the item (a container is left out of its batch: ``container_skipped``).

``Problems`` counts every such event by kind since the agent started, logs the first of each
kind (with its traceback where there is one), and the counts travel in ``agent.problems``.
"""

from __future__ import annotations

import logging
import threading
import types
import typing
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)
ELLIPSIS = "\u2026"


class Problems:
    """Counts of problems by kind since start; thread-safe (the Docker pool reports here too)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def count(self, kind: str, detail: str, *, with_traceback: bool = False) -> None:
        """Count one problem; the first of each kind is logged (call from ``except`` for a traceback)."""
        with self._lock:
            first = kind not in self._counts
            self._counts[kind] = self._counts.get(kind, 0) + 1
        if first:
            log.warning("%s: %s (counted in agent.problems, logged once)", kind, detail, exc_info=with_traceback)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


def _nullable(model: type[BaseModel], name: str) -> bool:
    annotation = model.model_fields[name].annotation
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in typing.get_args(
        annotation
    )


def build(model: type[ModelT], values: dict[str, Any], problems: Problems, what: str) -> ModelT:
    """``model`` from ``values``, mending refused top-level fields by the module's rule.

    Raises ValidationError when a refused field cannot be mended.
    """
    for _ in range(len(values) + 1):
        try:
            return model.model_validate(values)
        except ValidationError as exc:
            mended = False
            for error in exc.errors(include_url=False):
                if len(error["loc"]) != 1 or not isinstance(error["loc"][0], str):
                    continue
                name = error["loc"][0]
                if error["type"] == "string_too_long" and isinstance(values.get(name), str):
                    limit = int(error["ctx"]["max_length"])
                    values[name] = values[name][: limit - 1] + ELLIPSIS
                    problems.count("truncated", f"{what}: {name} longer than {limit} characters, cut")
                    mended = True
                elif name in model.model_fields and _nullable(model, name) and values.get(name) is not None:
                    problems.count("nulled", f"{what}: {name} = {str(values[name])[:80]!r} refused, published as null")
                    values[name] = None
                    mended = True
            if not mended:
                raise
    return model.model_validate(values)
