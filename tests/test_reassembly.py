"""bridge.reassembly on its own: chunked messages put together within their bounds, and every way a
sequence of chunks is refused. The real engine under attack is in tests/test_hostile_peers.py."""

from __future__ import annotations

import json

import pytest

from bridge import protocol
from bridge.protocol import DELIMITER, FRAME_BYTES, REQUESTS, Message, Part, ProtocolError, Session, timestamp
from bridge.reassembly import Reassembly

KEY = "a" * 64
MIB = 2**20


def chunks(msg: Message, session: Session | None = None) -> list[Part]:
    """`msg` as its parts, each as the receiving Session accepts it."""
    sender, receiver = session or Session(KEY), Session(KEY)
    return [receiver.check([bytes(f) for f in part], REQUESTS) for part in sender.parts(msg)]


def submit(size: int) -> Message:
    return Message("submit_request", {"name": "x.png"}, [bytes(range(256)) * (size // 256)])


def forged(msg_id: str, index: int, count: int, data: bytes, **fields) -> Part:
    """A chunk signed with the key, whose header says whatever the sender likes."""
    header = {"msg_id": msg_id, "msg_type": "submit_request", "version": protocol.VERSION, "date": timestamp()}
    header.update(chunk=index, chunks=count, **fields)
    parts = [json.dumps(header).encode(), b"{}", b"{}", data]
    session = Session(KEY)
    return session.check([DELIMITER, session.sign(parts), *parts], REQUESTS)


def test_chunks_in_order_make_the_message_and_hold_no_more_than_announced():
    msg = submit(5 * FRAME_BYTES + 100)
    parts = chunks(msg)
    reassembly = Reassembly(MIB, MIB)
    for part in parts[:-1]:
        assert reassembly.add(b"c1", "alice", part, 0.0) is None
        assert reassembly.reserved == sum(len(b) for b in msg.buffers) + len(b'{"name":"x.png"}')
    back = reassembly.add(b"c1", "alice", parts[-1], 0.0)
    assert back.buffers == msg.buffers and back.content == {"name": "x.png"} and back.msg_id == msg.msg_id
    assert reassembly.open == {} and reassembly.reserved == 0


def test_a_message_announced_over_the_limit_is_refused_at_its_first_chunk_and_its_rest_costs_nothing():
    """The 1.5 GB case in small: nothing of it is held, one error in all, its further chunks dropped."""
    reassembly = Reassembly(max_bytes=MIB, max_total_bytes=4 * MIB)
    size = 1536 * MIB
    count = protocol.chunk_count(size)
    with pytest.raises(ProtocolError) as refused:
        reassembly.add(b"c1", "", forged("huge", 0, count, b"x" * FRAME_BYTES, sizes=[2, size - 2]), 0.0)
    assert refused.value.code == protocol.TOO_LARGE and "limit of 1 MiB" in refused.value.message
    assert refused.value.parent["msg_id"] == "huge"
    assert reassembly.open == {} and reassembly.reserved == 0
    for index in range(1, 50):
        assert reassembly.add(b"c1", "", forged("huge", index, count, b"x" * FRAME_BYTES), 0.0) is None
    assert reassembly.open == {}


@pytest.mark.parametrize("bad", [0, 1], ids=["first-short", "last-over-the-announced-size"])
def test_a_chunk_of_another_length_than_announced_ends_its_message(bad):
    """Announced: FRAME_BYTES + 5 bytes, so a full chunk and one of 5 bytes."""
    reassembly = Reassembly(MIB, MIB)
    size = FRAME_BYTES + 5
    sent = [b"x" * FRAME_BYTES, b"x" * 5]
    sent[bad] = b"x" * (FRAME_BYTES - 1) if bad == 0 else b"x" * 10
    if bad == 1:
        assert reassembly.add(b"c1", "", forged("m", 0, 2, sent[0], sizes=[size]), 0.0) is None
    with pytest.raises(ProtocolError) as refused:
        reassembly.add(b"c1", "", forged("m", bad, 2, sent[bad], **({"sizes": [size]} if bad == 0 else {})), 0.0)
    assert "not the" in refused.value.message and "announced" in refused.value.message
    assert reassembly.open == {} and reassembly.reserved == 0
    assert reassembly.add(b"c1", "", forged("m", 1, 2, b"x" * 5), 0.0) is None  # its rest: dropped, no error


def test_a_chunk_out_of_order_ends_the_message_with_one_error():
    reassembly = Reassembly(MIB, MIB)
    parts = chunks(submit(4 * FRAME_BYTES))
    reassembly.add(b"c1", "", parts[0], 0.0)
    with pytest.raises(ProtocolError) as refused:
        reassembly.add(b"c1", "", parts[2], 0.0)
    assert "out of order" in refused.value.message and "chunk 1" in refused.value.message
    assert refused.value.parent["chunk"] == 0  # the message's own header: its sender knows which one
    assert [reassembly.add(b"c1", "", part, 0.0) for part in parts[1:]] == [None] * (len(parts) - 1)
    assert reassembly.open == {}


def test_a_chunk_without_its_first_is_refused():
    reassembly = Reassembly(MIB, MIB)
    with pytest.raises(ProtocolError) as refused:
        reassembly.add(b"c1", "", forged("m", 3, 9, b"x" * FRAME_BYTES), 0.0)
    assert "its first chunk" in refused.value.message


def test_a_chunk_that_changes_its_message_s_type_or_count_ends_it():
    reassembly = Reassembly(MIB, MIB)
    reassembly.add(b"c1", "", forged("m", 0, 3, b"x" * FRAME_BYTES, sizes=[3 * FRAME_BYTES]), 0.0)
    with pytest.raises(ProtocolError) as refused:
        reassembly.add(b"c1", "", forged("m", 1, 4, b"x" * FRAME_BYTES), 0.0)
    assert "does not match its first chunk" in refused.value.message and reassembly.open == {}


@pytest.mark.parametrize("sizes", [[10], [FRAME_BYTES * 3], [], ["12"], [True], [-1, 10], [1] * 6, {"a": 1}, None])
def test_an_announcement_whose_sizes_do_not_match_its_chunks_is_refused(sizes):
    reassembly = Reassembly(MIB, MIB)
    with pytest.raises(ProtocolError) as refused:
        reassembly.add(b"c1", "", forged("m", 0, 2, b"x" * FRAME_BYTES, sizes=sizes), 0.0)
    assert "sizes" in refused.value.message and reassembly.open == {}


def test_each_connection_has_one_message_in_progress_and_all_together_are_bounded():
    """Two connections' uploads go on side by side; a third that would pass the bound on all of
    them is refused at its announcement (queue_full: try again), and fits once one is done."""
    reassembly = Reassembly(max_bytes=MIB, max_total_bytes=2 * MIB)
    a, b, c = (chunks(submit(MIB - 256)) for _ in range(3))
    reassembly.add(b"A", "alice", a[0], 0.0)
    reassembly.add(b"B", "bob", b[0], 0.0)
    with pytest.raises(ProtocolError) as busy:
        reassembly.add(b"C", "carol", c[0], 0.0)
    assert busy.value.code == protocol.QUEUE_FULL and "again" in busy.value.hint
    for part_a, part_b in zip(a[1:], b[1:]):
        done_a = reassembly.add(b"A", "alice", part_a, 0.0)
        done_b = reassembly.add(b"B", "bob", part_b, 0.0)
    assert done_a is not None and done_b is not None and reassembly.reserved == 0
    c = chunks(submit(MIB - 256))  # carol sends it again
    assert [reassembly.add(b"C", "carol", part, 0.0) for part in c][-1] is not None


def test_a_new_message_on_a_connection_drops_the_one_in_progress():
    reassembly = Reassembly(MIB, MIB)
    old, new = chunks(submit(3 * FRAME_BYTES)), chunks(submit(2 * FRAME_BYTES))
    reassembly.add(b"c1", "", old[0], 0.0)
    assert [reassembly.add(b"c1", "", part, 0.0) for part in new][-1] is not None
    assert [reassembly.add(b"c1", "", part, 0.0) for part in old[1:]] == [None] * (len(old) - 1)  # no error
    assert reassembly.open == {}


def test_a_stalled_message_is_dropped_after_the_timeout_and_its_sender_named():
    reassembly = Reassembly(MIB, MIB, stall_s=30.0)
    parts = chunks(submit(3 * FRAME_BYTES))
    reassembly.add(b"c1", "alice", parts[0], 100.0)
    reassembly.add(b"c1", "alice", parts[1], 120.0)
    assert reassembly.expire(149.0) == []
    (stalled,) = reassembly.expire(151.0)
    assert (stalled.connection, stalled.sender, stalled.header["msg_id"]) == (b"c1", "alice", parts[0].header["msg_id"])
    assert reassembly.open == {} and reassembly.reserved == 0
    assert reassembly.add(b"c1", "alice", parts[2], 152.0) is None  # its late chunk: dropped, no error


def test_a_forged_chunk_is_refused_on_arrival_and_the_message_in_progress_goes_on():
    """An unsigned or wrongly signed chunk never reaches the reassembly: Session.check refuses it
    before reading its header, so it costs nothing beyond itself."""
    receiver, reassembly = Session(KEY), Reassembly(MIB, MIB)
    sender = Session(KEY)
    msg = submit(2 * FRAME_BYTES + 10)
    parts = [[bytes(f) for f in part] for part in sender.parts(msg)]
    reassembly.add(b"c1", "", receiver.check(parts[0], REQUESTS), 0.0)
    for bad in (
        [DELIMITER, b"0" * 64, *parts[1][2:]],
        [*Session("b" * 64).parts(Message("submit_request", {}, [b"x" * 2 * FRAME_BYTES]))][1],
    ):
        with pytest.raises(ProtocolError, match="signature"):
            receiver.check(bad, REQUESTS)
    done = [reassembly.add(b"c1", "", receiver.check(part, REQUESTS), 0.0) for part in parts[1:]]
    assert done[-1].buffers == msg.buffers
