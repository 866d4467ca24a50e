"""bridge.protocol on its own: signing, the wire form, and every way a message is rejected.

No engine here (see test_bridge_engine.py for the real process): these pin down the one module
that defines the messages, so that the engine and every client agree on them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridge import protocol
from bridge.protocol import DELIMITER, REPLIES, REQUESTS, VERSION, Message, ProtocolError, Session, timestamp
from bridge.reassembly import Reassembly

ROOT = Path(__file__).resolve().parents[1]
KEY = "a" * 64


def _signed(
    session: Session, header: bytes, content: bytes = b"{}", parent: bytes = b"{}", buffers: tuple[bytes, ...] = ()
) -> list[bytes]:
    """Frames with a correct signature over arbitrary (possibly broken) JSON parts."""
    parts = [header, parent, b"{}", content]
    return [DELIMITER, session.sign([*parts, *buffers]), *parts, *buffers]


def _header(**fields) -> bytes:
    header = {"msg_id": "m1", "msg_type": "status_request", "version": VERSION, "date": timestamp()}
    header.update(fields)
    return json.dumps({k: v for k, v in header.items() if v is not ...}).encode()


def one(session: Session, msg: Message) -> list[bytes]:
    """The frames of a message that travels as one part."""
    (part,) = session.parts(msg)
    return [bytes(f) for f in part]


def _rejected(session: Session, frames: list[bytes], expect=REQUESTS) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        session.deserialize(frames, expect)
    assert info.value.hint, "every rejection tells the sender what to do"
    return info.value


# -- keys, signatures, round trip ------------------------------------------------------------------


def test_new_key_is_random_256_bit_hex():
    keys = {protocol.new_key() for _ in range(20)}
    assert len(keys) == 20
    for key in keys:
        assert len(key) == 64 and int(key, 16) >= 0


def test_signature_is_hmac_sha256_over_every_frame_with_its_length():
    session = Session(KEY)
    frames = one(session, Message("submit_request", {"name": "x.png"}, [b"image", b"mask"]))
    assert frames[0] == DELIMITER
    mac = hmac.new(KEY.encode(), digestmod=hashlib.sha256)
    for frame in frames[2:]:
        mac.update(len(frame).to_bytes(8, "big") + frame)
    assert frames[1] == mac.hexdigest().encode()


def test_changed_or_reshaped_buffers_break_the_signature():
    session = Session(KEY)
    frames = one(session, Message("submit_request", {"name": "x.png", "job": {}}, [b"image", b"mask"]))
    for buffers in ([b"imagE", b"mask"], [b"imag", b"emask"], [b"image"], [b"image", b"mask", b""]):
        assert "signature" in _rejected(session, [*frames[:6], *buffers]).message


def test_round_trip_keeps_type_content_buffers_and_parent():
    session = Session(KEY)
    parent = {"msg_id": "abc", "msg_type": "submit_request"}
    msg = Message(
        "result", {"job_id": "f" * 32, "name": "horse.png", "unicode": "é✓"}, [b"<svg/>", bytes(range(256))], parent
    )
    frames = one(session, msg)
    assert len(frames) == 6 + 2  # delimiter, signature, header, parent, metadata, content, buffers
    back = session.deserialize(frames, REPLIES)
    assert back.msg_type == "result"
    assert back.content == msg.content
    assert back.buffers == [b"<svg/>", bytes(range(256))]
    assert back.parent == parent
    assert back.header["version"] == VERSION and back.header["msg_type"] == "result"
    assert back.msg_id == msg.msg_id and len(back.msg_id) == 32


def test_every_message_gets_its_own_id():
    session = Session(KEY)
    ids = {session.deserialize(one(session, Message("status_request")), REQUESTS).msg_id for _ in range(50)}
    assert len(ids) == 50


def test_split_ids_separates_routing_frames():
    session = Session(KEY)
    frames = one(session, Message("status_request"))
    ids, rest = session.split_ids([b"peer", b"proxy", *frames])
    assert ids == [b"peer", b"proxy"]
    assert rest == frames


# -- rejections --------------------------------------------------------------------------------------


def test_missing_delimiter_is_rejected():
    session = Session(KEY)
    frames = one(session, Message("status_request"))
    with pytest.raises(ProtocolError) as info:
        session.split_ids([b"peer", *frames[1:]])
    assert info.value.code == protocol.BAD_MESSAGE and "delimiter" in info.value.message


def test_signature_under_another_key_is_rejected():
    frames = one(Session("b" * 64), Message("status_request"))
    err = _rejected(Session(KEY), frames)
    assert err.code == protocol.BAD_MESSAGE and "signature" in err.message


@pytest.mark.parametrize("part", [2, 3, 4, 5])
def test_any_changed_json_part_breaks_the_signature(part):
    session = Session(KEY)
    frames = one(session, Message("submit_request", {"name": "x.png", "job": {"kind": "sketch"}}, [b"img"]))
    frames[part] = frames[part].replace(b"}", b' ,"x":1}', 1) if frames[part] != b"{}" else b'{"x":1}'
    assert "signature" in _rejected(session, frames).message


def test_missing_or_garbled_signature_is_rejected():
    session = Session(KEY)
    frames = one(session, Message("status_request"))
    for signature in (b"", b"0" * 64, frames[1][:-1], frames[1].upper(), b"\xff" * 64):
        assert "signature" in _rejected(session, [frames[0], signature, *frames[2:]]).message


@pytest.mark.parametrize("keep", [0, 1, 2, 5])
def test_truncated_multipart_is_rejected(keep):
    session = Session(KEY)
    frames = one(session, Message("status_request"))[:keep]
    err = _rejected(session, frames)
    assert err.code == protocol.BAD_MESSAGE and "frames" in err.message


def test_oversized_message_is_rejected_before_its_signature_is_checked():
    session = Session(KEY, max_bytes=10_000)
    frames = one(session, Message("submit_request", {"name": "big.png"}, [b"\0" * 20_000]))
    err = _rejected(session, frames)
    assert err.code == protocol.TOO_LARGE and "limit" in err.message and "--max-message-mb" in err.hint
    unsigned = [DELIMITER, b"nonsense", b"{}", b"{}", b"{}", b"x" * 20_000]
    assert _rejected(session, unsigned).code == protocol.TOO_LARGE  # before the signature
    # just under the limit is fine
    ok = one(session, Message("submit_request", {"name": "ok.png"}, [b"\0" * 9_000]))
    assert session.deserialize(ok, REQUESTS).buffers == [b"\0" * 9_000]


@pytest.mark.parametrize(
    "header",
    [
        _header(version="0.9"),
        _header(version=None),
        _header(version=...),
        _header(version=1.0),
        _header(version=["1.0"]),
        _header(version={"major": 1}),
    ],
    ids=["old", "null", "missing", "number", "list", "object"],
)
def test_other_protocol_version_is_rejected(header):
    session = Session(KEY)
    err = _rejected(session, _signed(session, header))
    assert err.code == protocol.BAD_MESSAGE and "version" in err.message and VERSION in err.message


@pytest.mark.parametrize(
    "msg_type",
    ["frobnicate_request", "status_reply", "", None, ..., 7, ["status_request"], {"a": 1}],
    ids=["unknown", "reply-as-request", "empty", "null", "missing", "number", "list", "object"],
)
def test_unknown_message_type_is_rejected(msg_type):
    session = Session(KEY)
    err = _rejected(session, _signed(session, _header(msg_type=msg_type)))
    assert err.code == protocol.BAD_MESSAGE and "message type" in err.message
    assert "status_request" in err.hint


def test_request_type_is_not_accepted_where_a_reply_is_expected():
    session = Session(KEY)
    err = _rejected(session, one(session, Message("status_request")), expect=REPLIES)
    assert "status_request" in err.message


def test_long_unknown_type_gives_a_short_message():
    session = Session(KEY)
    err = _rejected(session, _signed(session, _header(msg_type="x" * 100_000)))
    assert len(err.message) < 200


@pytest.mark.parametrize(
    "part, data",
    [
        ("header", b"{not json"),
        ("content", b'{"a": }'),
        ("parent", b"\xff\xfe\x00garbage"),
        ("content", b'{"a": NaN}'),
        ("header", _header(msg_id=...)[:-1] + b', "x": Infinity}'),
        ("content", b'{"a": -Infinity}'),
        ("content", b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        ("header", b'{"x": ' + b'{"y": ' * 50_000 + b"1" + b"}" * 50_001),
        ("content", b"\xc3\x28"),
        ("content", b""),
        ("content", b'{"a": 1} trailing'),
    ],
    ids=[
        "header-syntax",
        "content-syntax",
        "binary",
        "nan",
        "infinity",
        "-infinity",
        "deep-array",
        "deep-object",
        "bad-utf8",
        "empty",
        "trailing",
    ],
)
def test_invalid_json_is_rejected(part, data):
    session = Session(KEY)
    kwargs = {"header": _header(), "content": b"{}", "parent": b"{}"}
    kwargs[part] = data
    err = _rejected(session, _signed(session, **kwargs))
    assert err.code == protocol.BAD_MESSAGE and "JSON" in err.message


@pytest.mark.parametrize(
    "part, data",
    [("content", b"[]"), ("content", b'"text"'), ("parent", b"null"), ("header", b"42"), ("content", b"true")],
)
def test_json_that_is_not_an_object_is_rejected(part, data):
    session = Session(KEY)
    kwargs = {"header": _header(), "content": b"{}", "parent": b"{}"}
    kwargs[part] = data
    err = _rejected(session, _signed(session, **kwargs))
    assert err.code == protocol.BAD_MESSAGE and "JSON objects" in err.message


def test_nan_is_never_sent_either():
    with pytest.raises(ValueError):
        one(Session(KEY), Message("progress", {"loss": float("nan")}))


def test_error_content_shape():
    assert protocol.error_content("bad_input", "no image", "send one") == {
        "code": "bad_input",
        "message": "no image",
        "hint": "send one",
    }
    assert protocol.error_content("cancelled", "gone", job_id="f" * 32)["job_id"] == "f" * 32


def test_protocol_needs_only_the_standard_library():
    """Inkscape's Python has no zmq, torch or numpy: the message definitions must import there."""
    code = (
        "import sys; import bridge.protocol; "
        "third = sorted({m.split('.')[0] for m in sys.modules} & {'zmq', 'torch', 'numpy', 'platformdirs', "
        "'engine', 'PIL', 'lxml'}); print(','.join(third))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


# -- replays --------------------------------------------------------------------------------------


def test_a_signed_message_is_accepted_once():
    sender, receiver = Session(KEY), Session(KEY)
    frames = one(sender, Message("submit_request", {"name": "x.png"}, [b"image"]))
    assert receiver.deserialize(frames, REQUESTS).content == {"name": "x.png"}
    err = _rejected(receiver, frames)
    assert err.code == protocol.BAD_MESSAGE and "replay" in err.message
    assert receiver.deserialize(one(sender, Message("submit_request")), REQUESTS)  # a new one is fine


@pytest.mark.parametrize(
    ("offset_s", "words"),
    [(-protocol.REPLAY_WINDOW_S - 5, "too old"), (protocol.CLOCK_SKEW_S + 5, "ahead of the engine's clock")],
)
def test_a_message_dated_outside_the_window_is_refused(offset_s, words):
    """A capture replayed after the receiver forgot its signature is old news; a date further ahead
    than clocks drift is forged (it would stay fresh for longer than the replay window)."""
    session = Session(KEY)
    frames = _signed(session, _header(date=timestamp(time.time() + offset_s)))
    err = _rejected(session, frames)
    assert words in err.message


def test_a_message_dated_within_the_clock_skew_is_accepted():
    session = Session(KEY)
    ahead = _signed(session, _header(date=timestamp(time.time() + protocol.CLOCK_SKEW_S - 5)))
    assert session.deserialize(ahead, REQUESTS).msg_type == "status_request"


@pytest.mark.parametrize("date", ["", "2024-01-01", 12345, None])
def test_a_message_without_a_usable_date_is_refused(date):
    session = Session(KEY)
    assert "date" in _rejected(session, _signed(session, _header(date=date))).message


def test_forgetting_signatures_for_room_moves_the_horizon(monkeypatch):
    """When the history is full the oldest signature is forgotten, and with it everything that old:
    the forgotten message cannot come back."""
    monkeypatch.setattr(protocol, "DIGEST_HISTORY", 3)
    sender, receiver = Session(KEY), Session(KEY)
    now = time.time()
    sent = [_signed(sender, _header(msg_id=f"m{i}", date=timestamp(now - 10 + i))) for i in range(5)]
    for frames in sent:
        receiver.deserialize(frames, REQUESTS)
    for frames in sent[:2]:  # forgotten for room, and refused all the same
        assert "too old" in _rejected(receiver, frames).message
    for frames in sent[2:]:  # remembered
        assert "replay" in _rejected(receiver, frames).message


def test_the_plain_password_proves_the_key_without_being_it():
    assert protocol.plain_password(KEY) == protocol.plain_password(KEY)
    assert protocol.plain_password(KEY) != protocol.plain_password("b" * 64)
    assert KEY.encode() not in protocol.plain_password(KEY)


# -- parts and chunks ----------------------------------------------------------------------------


def test_a_large_message_travels_as_chunks_of_one_small_frame_each_and_comes_back_whole():
    """No part is more than MAX_PART_FRAMES frames of at most FRAME_BYTES: the engine's ZeroMQ then
    holds a few of them per connection (RCVHWM counts messages); the chunks, each signed and dated
    on its own, add up to the message again."""
    session = Session(KEY)
    image = bytes(range(256)) * (3 * protocol.FRAME_BYTES // 256 + 7)  # 3 full frames and a short one
    mask = b"m" * protocol.FRAME_BYTES  # exactly one frame
    content = {"name": "x.png", "strokes": [[1.0 / 3] * 8] * 900}  # a refine request's strokes: ~140 KB
    msg = Message("submit_request", content, [image, mask, b""])
    parts = [[bytes(f) for f in part] for part in session.parts(msg)]
    size = len(json.dumps(content, separators=(",", ":"))) + len(image) + len(mask)
    assert len(parts) == protocol.chunk_count(size) == -(-size // protocol.FRAME_BYTES)
    assert all(len(part) == 6 and max(len(f) for f in part) <= protocol.FRAME_BYTES for part in parts)
    headers = [json.loads(part[2]) for part in parts]
    assert [h["chunk"] for h in headers] == list(range(len(parts)))
    assert {h["msg_id"] for h in headers} == {msg.msg_id} and {h["chunks"] for h in headers} == {len(parts)}
    assert headers[0]["sizes"][1:] == [len(image), len(mask), 0] and "sizes" not in headers[1]
    assert len({part[1] for part in parts}) == len(parts)  # each signed on its own
    receiver, reassembly = Session(KEY), Reassembly(protocol.MAX_MESSAGE_BYTES, protocol.MAX_MESSAGE_BYTES)
    done = [reassembly.add(b"peer", "", receiver.check(part, REQUESTS), 0.0) for part in parts]
    assert done[:-1] == [None] * (len(parts) - 1)  # held until its last chunk
    assert done[-1].buffers == [image, mask, b""] and done[-1].content == content
    assert done[-1].msg_id == msg.msg_id and reassembly.open == {}


def test_a_message_that_fits_travels_as_one_part_with_its_buffers_in_frames_of_their_own():
    session = Session(KEY)
    frames = one(session, Message("result", {"job_id": "f" * 32}, [b"<svg/>"]))
    assert len(frames) == 7 and "chunks" not in json.loads(frames[2])


def test_a_message_over_the_limit_is_refused_before_a_part_is_made():
    session = Session(KEY)
    msg = Message("submit_request", {"name": "big.png"}, [b"\0" * 3 * protocol.FRAME_BYTES])
    with pytest.raises(ProtocolError) as refused:
        session.parts(msg, limit=2 * protocol.FRAME_BYTES)
    assert refused.value.code == protocol.TOO_LARGE and "limit of 0.1 MiB" in refused.value.message


def test_a_chunk_handed_over_as_a_whole_message_is_refused():
    session = Session(KEY)
    first = next(session.parts(Message("submit_request", {}, [b"x" * 2 * protocol.FRAME_BYTES])))
    err = _rejected(Session(KEY), [bytes(f) for f in first])
    assert "chunk" in err.message and err.parent["chunk"] == 0


@pytest.mark.parametrize(
    "fields",
    [
        {"chunk": -1, "chunks": 3},
        {"chunk": 3, "chunks": 3},
        {"chunk": "0", "chunks": 3},
        {"chunk": True, "chunks": 3},
        {"chunk": 0, "chunks": None},
        {"chunk": 0, "chunks": 3, "msg_id": "x" * 65},
        {"chunk": 0, "chunks": 3, "msg_id": ["m1"]},
    ],
)
def test_a_chunk_with_an_invalid_index_count_or_id_is_refused(fields):
    session = Session(KEY)
    frames = _signed(session, _header(msg_type="submit_request", **fields))
    assert "chunk" in _rejected(session, frames).message


def test_a_chunk_of_two_data_frames_is_refused():
    session = Session(KEY)
    frames = _signed(session, _header(chunk=0, chunks=1, sizes=[2]), buffers=(b"x",))
    assert "one frame" in _rejected(session, frames).hint


def test_more_frames_than_a_part_may_have_are_refused_before_the_signature_is_checked():
    session = Session(KEY)
    frames = [DELIMITER, b"sig", *[b"{}"] * 4, *[b"x"] * protocol.MAX_PART_FRAMES]
    err = _rejected(session, frames)
    assert f"expected 6 to {protocol.MAX_PART_FRAMES} frames" in err.message and err.code == protocol.BAD_MESSAGE
