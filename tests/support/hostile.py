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
from tests.support.messages import node_metrics

LIMIT = 16_384
VALID_DOC: dict[str, Any] = json.loads(to_payload(node_metrics()))
VALID_TEXT = to_payload(node_metrics()).decode()

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


payloads = st.one_of(
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


HOSTILE_KINDS = (_random_bytes, _truncated, _wrong_type, _nan, _deep, _oversize, _spoofed, _beyond_64_bits)

BROKER_SAFE_TOPICS = [
    "otto/nodes/node-a/metrics/node",
    "otto/nodes/node-a/metrics/containers",
    "otto/nodes/n\u00f6de/metrics/node",  # an id the contract refuses
    "otto/nodes/" + "x" * 80 + "/metrics/node",  # too long an id
]


def hostile_batch(rng: random.Random, count: int) -> list[tuple[str, bytes]]:
    """Seeded hostile (topic, payload) pairs whose topics a broker accepts (no wildcards, valid UTF-8)."""
    return [(rng.choice(BROKER_SAFE_TOPICS), rng.choice(HOSTILE_KINDS)(rng)) for _ in range(count)]
