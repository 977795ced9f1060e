"""Small helpers shared by the agent and the subscriber (not part of the wire contract)."""

import os
from importlib import metadata


def _version() -> str:
    """The image's build version (``VERSION`` build argument), else the installed package's."""
    built = os.environ.get("OTTO_BUILD_VERSION", "").strip()
    if built:
        return built
    try:
        return metadata.version("otto-metrics")
    except metadata.PackageNotFoundError:
        return "0+unknown"


__version__ = _version()
