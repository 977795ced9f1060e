"""The agent's outbox, pure: order, drop-oldest by count and by bytes, replay after a disconnect."""

from __future__ import annotations

from agent.outbox import Message, Outbox


def message(n: int, size: int = 10) -> Message:
    return Message(f"otto/nodes/a/metrics/node#{n}", bytes([n % 256]) * size)


def drain(outbox: Outbox, first_id: int = 1) -> list[Message]:
    """Send everything unsent under consecutive ids; what was sent, in order."""
    sent = []
    while (next_message := outbox.next()) is not None:
        outbox.sent(first_id + len(sent))
        sent.append(next_message)
    return sent


def test_messages_leave_in_the_order_they_came_and_only_when_acknowledged() -> None:
    outbox = Outbox(max_messages=10, max_bytes=1_000)
    for n in range(3):
        assert outbox.add(message(n)) == []
    assert drain(outbox) == [message(0), message(1), message(2)]
    assert (len(outbox), outbox.in_flight, outbox.bytes) == (3, 3, 30)
    assert outbox.acknowledged(2) == message(1)  # acknowledgements may come in any order
    assert outbox.acknowledged(2) is None  # twice: nothing more
    assert outbox.acknowledged(1) == message(0)
    assert (len(outbox), outbox.bytes) == (1, 10)


def test_a_disconnect_replays_what_was_in_flight_first_in_its_order() -> None:
    outbox = Outbox(max_messages=10, max_bytes=1_000)
    for n in range(5):
        outbox.add(message(n))
    for message_id in (10, 11, 12):
        outbox.sent(message_id)
    outbox.acknowledged(11)  # message 1 made it; 0 and 2 did not
    assert outbox.requeue() == 2
    assert outbox.in_flight == 0
    assert drain(outbox, first_id=100) == [message(0), message(2), message(3), message(4)]


def test_a_full_outbox_drops_the_oldest_first_even_in_flight() -> None:
    outbox = Outbox(max_messages=3, max_bytes=1_000)
    for n in range(3):
        outbox.add(message(n))
    drain(outbox)  # all three in flight
    assert outbox.add(message(3)) == [message(0)]
    assert outbox.add(message(4)) == [message(1)]
    assert outbox.dropped == 2
    assert outbox.acknowledged(1) is None  # dropped: its late acknowledgement is ignored
    outbox.requeue()
    assert drain(outbox) == [message(2), message(3), message(4)]


def test_the_byte_bound_drops_as_many_as_it_takes() -> None:
    outbox = Outbox(max_messages=100, max_bytes=100)
    for n in range(4):
        outbox.add(message(n, size=25))
    assert outbox.add(message(9, size=60)) == [message(n, size=25) for n in range(3)]
    assert (len(outbox), outbox.bytes) == (2, 85)
    # A message larger than the bound on its own is kept alone rather than lost.
    assert outbox.add(message(10, size=500)) == [message(3, size=25), message(9, size=60)]
    assert (len(outbox), outbox.bytes) == (1, 500)
