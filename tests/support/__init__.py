"""Test and benchmark harness: real brokers, agents, subscribers and Compose stacks."""

import os

# Ryuk (testcontainers' reaper) cannot be pulled on these machines; the harness cleans up itself.
# Set before any testcontainers import, which reads it at import time.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
