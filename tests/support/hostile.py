"""Hostile MQTT input: the kinds of payloads and topics a subscriber must survive.

Hypothesis strategies for property tests, and a seeded generator of the same kinds for sending
through a real broker.
"""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import strategies as st

from contract import to_payload
from tests.support.messages import container_batch, event, node_metrics

LIMIT = 16_384
VALID_DOC: dict[str, Any] = json.loads(to_payload(node_metrics()))
VALID_TEXT = to_payload(node_metrics()).decode()
VALID_CONTAINERS: dict[str, Any] = json.loads(to_payload(container_batch()))
VALID_EVENT: dict[str, Any] = json.loads(to_payload(event("die", exit_code=3)))

#: Timestamps at the edges of what JSON, pydantic and Python's datetime can hold.
EDGE_TIMES = [
    "9999-12-31T23:59:59-01:00",  # valid ISO 8601, but its UTC equivalent is past year 9999
    "0001-01-01T00:00:00+01:00",  # likewise before year 1
    "9999-12-31T23:59:59.999999Z",
    "0001-01-01T00:00:00Z",
    "1970-01-01T00:00:00Z",
    "2262-04-11T23:47:16.854775807Z",  # int64 nanoseconds end here
    "2026-11-27T10:00:00+23:59",
    "2026-11-27T10:00:00",  # no offset: refused
]
EDGE_INTS = [2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, -1]
edge_strings = st.one_of(
    st.text(min_size=500, max_size=700),
    st.just("\u202e" * 513),  # right-to-left override, past the 512 limit
    st.just("we\x00b"),  # a NUL: no Docker name has one, PostgreSQL text cannot hold one
    st.text(alphabet="\U0001f433\u00e9\u200b<>&\"'", min_size=1, max_size=700),
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
weird_ids = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=0, max_size=70)


@st.composite
def mutated_documents(draw: st.DrawFn) -> bytes:
    """A valid node message with one field replaced by something else, or removed."""
    document = json.loads(VALID_TEXT)
    key = draw(st.sampled_from(sorted(document)))
    if draw(st.booleans()):
        document.pop(key)
    else:
        document[key] = draw(json_values)
    return json.dumps(document, allow_nan=True).encode()


@st.composite
def literal_edits(draw: st.DrawFn) -> bytes:
    """Text-level edits JSON encoders would not produce: NaN, Infinity, huge numbers, wrong quoting."""
    replacement = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "9" * 400, '"12.5"', "null", "true"]))
    field = draw(st.sampled_from(["cpu_percent", "memory_used_mb", "network_bytes_sent", "cycle"]))
    value = json.dumps(VALID_DOC[field])
    return VALID_TEXT.replace(f'"{field}":{value}', f'"{field}":{replacement}', 1).encode()


@st.composite
def edge_documents(draw: st.DrawFn) -> bytes:
    """A valid node or containers message with one field at the edge of its type's range."""
    if draw(st.booleans()):
        document = json.loads(VALID_TEXT)
        where, key = document, draw(st.sampled_from(["timestamp", "network_bytes_sent", "cycle", "agent"]))
        if key == "agent":
            where, key = document["agent"], draw(st.sampled_from(["version", "arch", "dropped"]))
    else:
        document = json.loads(json.dumps(VALID_CONTAINERS))
        where, key = document, draw(st.sampled_from(["timestamp", "cycle", "containers", "error"]))
        if key == "containers":
            if draw(st.booleans()):  # the same container twice
                document["containers"] = [document["containers"][0]] * 2
                return json.dumps(document).encode()
            where, key = (
                document["containers"][0],
                draw(st.sampled_from(["container_name", "image", "container_id", "pids", "block_write_bytes"])),
            )
    current = where[key]
    if key == "timestamp":
        where[key] = draw(st.sampled_from(EDGE_TIMES))
    elif isinstance(current, int):
        where[key] = draw(st.sampled_from(EDGE_INTS))
    else:
        where[key] = draw(edge_strings)
    return json.dumps(document).encode()


@st.composite
def edge_events(draw: st.DrawFn) -> bytes:
    """A valid container event with one field at the edge of its type's range, or a made-up action."""
    document = dict(VALID_EVENT)
    key = draw(st.sampled_from(["timestamp", "exit_code", "count", "container_name", "action", "health"]))
    if key == "timestamp":
        document[key] = draw(st.sampled_from(EDGE_TIMES))
    elif key in ("exit_code", "count"):
        document[key] = draw(st.sampled_from(EDGE_INTS))
    else:
        document[key] = draw(edge_strings)
    return json.dumps(document).encode()


payloads = st.one_of(
    edge_events(),
    edge_documents(),
    st.binary(max_size=400),
    st.integers(0, len(VALID_TEXT) - 1).map(lambda n: VALID_TEXT[:n].encode()),  # truncated
    json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    mutated_documents(),
    literal_edits(),
    st.integers(100, 20_000).map(lambda n: b"[" * n + b"]" * n),  # deep nesting
    st.integers(1, 4096).map(lambda n: b'{"pad":"' + b"x" * (LIMIT + n) + b'"}'),  # oversize
    weird_ids.map(lambda i: json.dumps({**VALID_DOC, "node_id": i}).encode()),  # spoofed / invalid ids
)
topics = st.one_of(
    st.just("otto/nodes/node-a/events"),
    st.just("otto/nodes/node-a/metrics/node"),
    st.just("otto/nodes/node-a/metrics/containers"),
    st.just("otto/nodes/node-a/status"),
    weird_ids.map(lambda i: f"otto/nodes/{i}/metrics/node"),
    st.text(max_size=80),
)


def _random_bytes(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(0, 300))


def _truncated(rng: random.Random) -> bytes:
    return VALID_TEXT[: rng.randint(0, len(VALID_TEXT) - 1)].encode()


def _wrong_type(rng: random.Random) -> bytes:
    return json.dumps({**VALID_DOC, "cpu_percent": rng.choice(["high", -5, 1e308, None, [], {}])}).encode()


def _nan(_rng: random.Random) -> bytes:
    return VALID_TEXT.replace('"cpu_percent":12.5', '"cpu_percent":NaN').encode()


def _deep(_rng: random.Random) -> bytes:
    return b"[" * 10_000 + b"]" * 10_000


def _oversize(_rng: random.Random) -> bytes:
    return b'{"pad":"' + b"x" * (LIMIT + 10) + b'"}'


def _spoofed(_rng: random.Random) -> bytes:
    return json.dumps({**VALID_DOC, "node_id": "node-b"}).encode()


def _beyond_64_bits(_rng: random.Random) -> bytes:
    return json.dumps({**VALID_DOC, "network_bytes_sent": 2**70}).encode()


def _calendar_edge(rng: random.Random) -> bytes:
    return json.dumps({**VALID_DOC, "timestamp": rng.choice(EDGE_TIMES[:2])}).encode()


def _long_name(rng: random.Random) -> bytes:
    document = json.loads(json.dumps(VALID_CONTAINERS))
    document["containers"][0]["container_name"] = "\U0001f433" * rng.randint(513, 2000)
    return json.dumps(document).encode()


#: Each of these is refused by the contract (the node topic's payloads) or by size.
HOSTILE_KINDS = (
    _random_bytes, _truncated, _wrong_type, _nan, _deep, _oversize, _spoofed, _beyond_64_bits,
    _calendar_edge, _long_name,
)  # fmt: skip

BROKER_SAFE_TOPICS = [
    "otto/nodes/node-a/metrics/node",
    "otto/nodes/node-a/metrics/containers",
    "otto/nodes/n\u00f6de/metrics/node",  # an id the contract refuses
    "otto/nodes/" + "x" * 80 + "/metrics/node",  # too long an id
]


def hostile_batch(rng: random.Random, count: int) -> list[tuple[str, bytes]]:
    """Seeded hostile (topic, payload) pairs whose topics a broker accepts (no wildcards, valid UTF-8)."""
    return [(rng.choice(BROKER_SAFE_TOPICS), rng.choice(HOSTILE_KINDS)(rng)) for _ in range(count)]
