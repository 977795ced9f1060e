"""Small helpers shared by the agent and the subscriber (not part of the wire contract)."""

__version__ = "0.1.0"
