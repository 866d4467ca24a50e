"""The engine protocol: every message the engine and its clients exchange, defined here and only here.

Shaped like the Jupyter kernel protocol. On the wire a message is one or more parts, each one
ZeroMQ message (multipart) of a few frames:

    [routing ids..., b"<IDS|MSG>", signature, header, parent_header, metadata, data...]

(see "Parts and chunks" below for the data frames).

`signature` is the hex HMAC-SHA256, under the key from the connection file, of every frame after it
(the JSON parts and the data frames), each preceded by its length as 8 big-endian bytes; checked in
constant time. (Jupyter signs the JSON parts only and without lengths; we also cover the images and
SVGs, and frame boundaries.) The header carries `version` and `date` (UTC, microseconds); a message
of another version, an unknown type or a malformed part is answered with an `error`. Binary
payloads (images, SVG) travel as buffers, never inside JSON.

Who may talk: before any message, ZeroMQ's PLAIN handshake must present the user name PLAIN_USER and
the password `plain_password(key)` (derived from the key, so the key itself never travels). The
engine's ZAP handler refuses every other peer at the handshake, so a local user without the key
never gets a message to the engine; what it sends before is one frame, at most FRAME_BYTES.

An engine that also serves the network (`serve --listen`) speaks CurveZMQ instead, on every
address: the client knows the engine's public key (from its connection file) and proves its own
key pair, which the engine's ZAP handler must find among the allowed keys (engine.service.keys),
or be the key pair the engine wrote into this machine's connection file. Messages are encrypted
on the wire; HMAC signing stays. The handshake's identity owns the jobs it submits: list, fetch,
cancel and status show a client its own jobs only (another's job id is an unknown job), the
queue takes turns between identities, and shutdown is for this machine's clients only (`forbidden`
otherwise; also the answer to every message of a key revoked after it connected).

Keys: each identity signs with a key of its own. On a loopback-only engine the one identity is
this machine's user and the key is the connection file's. An engine serving the network derives a
key per allowed client from its own signing key (engine.service.auth.identity_key): a remote
connection file holds its designer's key only, which signs for no one else.

Replays: a signed message is accepted once. Each Session (the engine keeps one per identity)
remembers the signatures it accepted (as Jupyter's digest history) for REPLAY_WINDOW_S, and refuses
a message dated more than REPLAY_WINDOW_S ago, more than CLOCK_SKEW_S ahead, or older than any
signature it had to forget; a captured request replayed later is refused. One identity's flood
fills its own history only.

Parts and chunks: a part is at most MAX_PART_FRAMES frames from the delimiter on, each of at most
FRAME_BYTES (the engine's socket drops a connection that starts a larger frame, before its bytes
arrive). A message whose content and each buffer fit in a frame travels as one part, its data
frames the content and the buffers, one each. A larger one travels as chunks: consecutive parts,
each signed and dated on its own, whose headers carry the message's `msg_id`, `chunk` (the part's
index from 0) and `chunks` (their count), and whose one data frame is the next FRAME_BYTES of the
content and buffers laid end to end (the last one shorter). The first chunk announces `sizes`,
the content's and each buffer's length in bytes, so a receiver knows the whole size before it
holds any of it (bridge.reassembly puts chunks together, within bounds). Why parts: ZeroMQ shows no
frame of a message before its last, and its high-water mark counts messages, not frames; only
when every message is small does that mark bound what a receiver's ZeroMQ holds.

Client -> engine (DEALER -> ROUTER), and the engine's replies:

  status_request  {}                                  -> status_reply {version, protocol, pid, device,
                                                         models, renderer, loaded, running, queue,
                                                         others, uptime_s, rates} (running, queue:
                                                         the sender's jobs; others: how many of other
                                                         clients' jobs are queued or running)
  submit_request  {job, name, preview_every?}         -> submit_reply {job_id, position}
                  + [image, mask?]
                  then, to every watcher of the job:     queue_update {job_id, position} (0: it starts)
                                                         progress {job_id, stage, iteration, total,
                                                                   loss, eta_s, detail} + [preview?]
                                                         heartbeat {job_id, state} every
                                                           HEARTBEAT_INTERVAL_S while it is queued
                                                           or running: an engine that stops
                                                           sending is not answering
                                                         result {job_id, ...} + [svg]
                                                         or error {job_id, code, message, hint}
  cancel_request  {job_id}                            -> cancel_reply {job_id, state}
  list_request    {}                                  -> list_reply {jobs: [job info...]}
  fetch_request   {job_id, watch}                     -> result + [svg] when finished, error when it
                                                         failed; fetch_reply {job info} while it is
                                                         queued or running (with watch=true the
                                                         client is then sent its progress and result)
  snapshot_request {job_id}                           -> snapshot_reply {job_id} + [svg]: a running
                                                         object sketch's best evaluated strokes of
                                                         every level so far, as the SVG a finished
                                                         job writes (not ranked); error not_running
                                                         for a job not running or not yet evaluated
  shutdown_request {}                                 -> shutdown_reply {}

`job` is the JSON form of a request (bridge.params.request_to_json): {"kind": "sketch" | "scene",
"params": {...}, "mask": "none" | "auto" | {"buffer": 1}, "width": ..., "color": ...}.
Job info: {job_id, name, kind, state, position, created, finished, error?, progress?}, where state is
one of JOB_STATES and `progress` is the content of the last progress message of a running job.

`eta_s` is an upper bound of the seconds left (the sketches still running may all go on to their
iteration cap; converged ones cost nothing more), and null when nothing is being optimised.
`preview_every` (seconds, at least 0.5) asks for a live preview: then, at most that often, a
progress message of an object sketch carries one buffer, a PNG (longest side 256 px) of the best
strokes so far of the level being optimised over the faded photo. `rates` maps a job kind to the
seconds one iteration of one sketch took on this engine, as last measured (object sketches report
it; absent before one ran): what a client needs to say what a preset costs here.

This module needs only the standard library, so it imports under any Python (Inkscape's included).
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

VERSION = "4.0"  # 1.1: signatures cover the buffers, length-prefixed; 2.0: PLAIN handshake, replays, heartbeat
# 2.1: live previews (preview_every, a PNG with progress), progress in job info, measured rates in status
# 2.2: CURVE on a network listener, jobs per identity
# 3.0: frames of at most FRAME_BYTES (buffers split, header `buffers`), keys per identity, CLOCK_SKEW_S
# 3.1: snapshot_request ("Insert it as it is now")
# 4.0: parts of at most MAX_PART_FRAMES frames; a large message as signed chunks (`chunk`, `chunks`, `sizes`)
MAX_MESSAGE_BYTES = 256 * 2**20  # default limit of one message, all frames together (`--max-message-mb`)
FRAME_BYTES = 64 * 2**10  # largest frame: what a peer can make the engine hold before its handshake
MAX_BUFFERS = 4  # buffers of one message at most (a submit has two: image and mask)
MAX_PART_FRAMES = 6 + MAX_BUFFERS  # delimiter, signature, header, parent, metadata, content, buffers
MAX_ID_CHARS = 64  # a chunked message's msg_id: receivers remember refused ones
DELIMITER = b"<IDS|MSG>"
PLAIN_USER = b"sketch-abstraction"
HEARTBEAT_INTERVAL_S = 1.0  # the engine's heartbeat to each watcher of a queued or running job
HEARTBEAT_TIMEOUT_S = 15.0  # silence after which a client says the engine is not answering
REPLAY_WINDOW_S = 300.0  # a message dated longer ago is refused
CLOCK_SKEW_S = 30.0  # a message dated further ahead is refused (clocks of two machines kept by NTP)
DIGEST_HISTORY = 65_536  # signatures remembered at most per identity; forgetting one moves its horizon
_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_JOB_ID = re.compile(r"[0-9a-f]{32}")

REQUESTS = frozenset(
    {
        "status_request",
        "submit_request",
        "cancel_request",
        "list_request",
        "fetch_request",
        "snapshot_request",
        "shutdown_request",
    }
)
REPLIES = frozenset(
    {
        "status_reply",
        "submit_reply",
        "queue_update",
        "progress",
        "result",
        "error",
        "heartbeat",
        "cancel_reply",
        "list_reply",
        "fetch_reply",
        "snapshot_reply",
        "shutdown_reply",
    }
)
JOB_STATES = ("queued", "running", "done", "error", "cancelled", "interrupted")
FINISHED = frozenset({"done", "error", "cancelled", "interrupted"})

# Error codes the engine sends besides the job errors of bridge.errors (bad_input, weights_missing,
# device_error, cancelled, engine_error).
BAD_MESSAGE = "bad_message"  # malformed frames, JSON, signature, version or type
TOO_LARGE = "too_large"
QUEUE_FULL = "queue_full"  # the engine holds as many waiting jobs (or bytes of them) as it takes
UNKNOWN_JOB = "unknown_job"
NOT_RUNNING = "not_running"  # a snapshot of a job that is not running or has no evaluated strokes yet
FORBIDDEN = "forbidden"  # a revoked key, or a remote client asking to stop the engine
INTERNAL = "internal_error"


class ProtocolError(Exception):
    """A message that cannot be accepted; `code` and `hint` go back to the sender in an error reply."""

    def __init__(self, message: str, hint: str = "", code: str = BAD_MESSAGE, parent: dict[str, Any] | None = None):
        super().__init__(message)
        self.message, self.hint, self.code = message, hint, code
        self.parent = parent or {}  # the header of the message refused, once it could be read


@dataclass
class Message:
    msg_type: str
    content: dict[str, Any] = field(default_factory=dict)
    buffers: list[bytes] = field(default_factory=list)
    parent: dict[str, Any] = field(default_factory=dict)  # header of the request this answers
    header: dict[str, Any] = field(default_factory=dict)  # filled in by Session.parts

    @property
    def msg_id(self) -> str:
        return str(self.header.get("msg_id", ""))


def new_key() -> str:
    return secrets.token_hex(32)


def plain_password(key: str) -> bytes:
    """The PLAIN handshake's password for `key`: proves the key without sending it."""
    return hmac.new(key.encode("ascii"), b"sketch-abstraction zmq PLAIN", hashlib.sha256).hexdigest().encode("ascii")


def timestamp(when: float | None = None) -> str:
    """A header's `date`: UTC with microseconds."""
    moment = datetime.fromtimestamp(time.time() if when is None else when, timezone.utc)
    return moment.strftime(_DATE_FORMAT)


Frame = bytes | memoryview  # a received frame: the engine reads zmq's buffers without copying them


def check_size(size: int, limit: int) -> None:
    """ProtocolError (TOO_LARGE) when a message of `size` bytes (content and buffers) exceeds `limit`.

    The engine checks what a first chunk announces; clients check before sending
    (ConnectionInfo.max_message_bytes), so that a refusal costs no upload.
    """
    if size > limit:
        raise ProtocolError(
            f"message of {mib(size)} exceeds the engine's limit of {mib(limit)}",
            "send a smaller image, or restart the engine with a larger --max-message-mb",
            TOO_LARGE,
        )


def mib(size: int) -> str:
    return f"{size / 2**20:.1f}".rstrip("0").rstrip(".") + " MiB"


def chunk_count(size: int) -> int:
    """How many chunks carry a message of `size` bytes (content and buffers): one at least."""
    return max(1, -(-size // FRAME_BYTES))


def chunk_bytes(size: int, index: int) -> int:
    """The length of chunk `index` of a message of `size` bytes: FRAME_BYTES but the last."""
    return min(FRAME_BYTES, size - index * FRAME_BYTES)


@dataclass
class Part:
    """One part (ZeroMQ message) as Session.check accepted it: a whole message, or one chunk."""

    header: dict[str, Any]
    parent: dict[str, Any]
    data: list[bytes]  # the content and buffers, or the chunk's bytes

    @property
    def chunked(self) -> bool:
        return "chunks" in self.header

    def message(self) -> Message:
        """The message of a part that is one whole; ProtocolError for a chunk."""
        if self.chunked:
            raise ProtocolError(
                "a chunk of a larger message came where a whole message was expected",
                "put chunks together with bridge.reassembly",
                parent=self.header,
            )
        content, *buffers = self.data
        return Message(self.header["msg_type"], _object(content), buffers, self.parent, self.header)


def assemble(header: dict[str, Any], parent: dict[str, Any], pieces: list[bytes]) -> Message:
    """The message whose first chunk's header is `header`, from the data of all its chunks (each
    piece released once copied, so the message is held about once, not twice)."""
    views: collections.deque[memoryview] = collections.deque(memoryview(p) for p in pieces)
    pieces.clear()
    payloads = []
    for size in header["sizes"]:
        slices = []
        while size:
            view = views.popleft()
            slices.append(view[:size])
            if len(view) > size:
                views.appendleft(view[size:])
            size -= len(slices[-1])
        payloads.append(b"".join(slices))
    content, *buffers = payloads
    return Message(header["msg_type"], _object(content), buffers, parent, header)


class Session:
    """Signs, serialises and checks messages under one key (the connection file's)."""

    def __init__(self, key: str, max_bytes: int = MAX_MESSAGE_BYTES):
        self.key = key.encode("ascii")
        self.max_bytes = max_bytes  # largest part accepted, all frames together
        self._seen: collections.OrderedDict[bytes, float] = collections.OrderedDict()  # signature -> date
        self._horizon = 0.0  # date of the newest signature forgotten for room: nothing this old is accepted

    def sign(self, frames: Sequence[Frame]) -> bytes:
        """Hex HMAC-SHA256 of the frames after the signature, each preceded by its length (8 bytes,
        big-endian), so that no byte can move from one frame to the next unnoticed."""
        mac = hmac.new(self.key, digestmod=hashlib.sha256)
        for frame in frames:
            mac.update(len(frame).to_bytes(8, "big"))
            mac.update(frame)
        return mac.hexdigest().encode("ascii")

    def parts(self, msg: Message, limit: int | None = None) -> Iterator[list[Frame]]:
        """The parts that carry `msg`, each the frames after the routing ids: one when its content
        and each buffer fit in a frame, else its chunks. msg.header (the first part's) is filled in
        now, and a message over `limit` bytes is refused now (ProtocolError, TOO_LARGE); each
        chunk is dated and signed when it is taken, so the last of a long upload is as fresh as
        the first, and only one chunk is held at a time (views of the buffers where they can be)."""
        payloads = [_dumps(msg.content), *msg.buffers]
        size = sum(len(p) for p in payloads)
        if limit is not None:
            check_size(size, limit)
        msg.header = self._header(msg.msg_type, uuid.uuid4().hex)
        if len(msg.buffers) <= MAX_BUFFERS and all(len(p) <= FRAME_BYTES for p in payloads):
            return iter([self._part(msg.header, msg.parent, payloads)])
        msg.header.update(chunk=0, chunks=chunk_count(size), sizes=[len(p) for p in payloads])
        return self._chunks(msg, payloads)

    def _chunks(self, msg: Message, payloads: list[bytes]) -> Iterator[list[Frame]]:
        for index, piece in enumerate(_pieces(payloads)):
            if index == 0:
                yield self._part(msg.header, msg.parent, [piece])
            else:
                header = {**self._header(msg.msg_type, msg.msg_id), "chunk": index, "chunks": msg.header["chunks"]}
                yield self._part(header, {}, [piece])

    def _header(self, msg_type: str, msg_id: str) -> dict[str, Any]:
        return {"msg_id": msg_id, "msg_type": msg_type, "version": VERSION, "date": timestamp()}

    def _part(self, header: dict[str, Any], parent: dict[str, Any], data: Sequence[Frame]) -> list[Frame]:
        parts = [_dumps(header), _dumps(parent), _dumps({})]
        return [DELIMITER, self.sign([*parts, *data]), *parts, *data]

    def split_ids(self, frames: Sequence[Frame]) -> tuple[list[Frame], list[Frame]]:
        """(routing ids, the rest from the delimiter on); no delimiter -> ProtocolError."""
        i = next((i for i, frame in enumerate(frames) if frame == DELIMITER), None)
        if i is None:
            raise ProtocolError(
                "no <IDS|MSG> delimiter in the message", "send Jupyter-style frames (see bridge/protocol.py)"
            )
        return list(frames[:i]), list(frames[i:])

    def check(self, frames: Sequence[Frame], expect: frozenset[str]) -> Part:
        """Check and decode one part (the frames after the routing ids); any defect -> ProtocolError.

        Checks run cheapest and most fundamental first: frame count, size, signature (before any
        JSON is parsed, so unsigned input is never interpreted), replay, JSON, version, date, type.
        The data frames are copied out of the receive buffers (zmq's), once.
        """
        if not 6 <= len(frames) <= MAX_PART_FRAMES or frames[0] != DELIMITER:
            raise ProtocolError(
                f"expected 6 to {MAX_PART_FRAMES} frames from the delimiter on, got {len(frames)}",
                "send delimiter, signature, header, parent, metadata, content, buffers; a message whose content "
                f"or a buffer is over {FRAME_BYTES} bytes as chunks (bridge/protocol.py)",
            )
        check_size(sum(len(f) for f in frames), self.max_bytes)
        signature, parts, data = bytes(frames[1]), [bytes(p) for p in frames[2:5]], frames[5:]
        if not hmac.compare_digest(signature, self.sign([*parts, *data])):
            raise ProtocolError("bad message signature", "use the key from the engine's current connection file")
        if signature in self._seen:
            raise ProtocolError("a message was sent again (a replay)", "send each request once; it is refused again")
        header, parent, _metadata = (_object(p) for p in parts)
        if header.get("version") != VERSION:
            raise ProtocolError(
                f"protocol version {_show(header.get('version'))} is not supported (engine speaks {VERSION})",
                "update the client and the engine together",
            )
        date = self._fresh_date(header.get("date"))
        msg_type = header.get("msg_type")
        if not isinstance(msg_type, str) or msg_type not in expect:
            raise ProtocolError(f"unknown message type {_show(msg_type)}", f"use one of: {', '.join(sorted(expect))}")
        if "chunks" in header and not _valid_chunk(header, len(data)):
            raise ProtocolError(
                "a chunk's msg_id, chunk or chunks is not valid, or it has more than one data frame",
                f"give each chunk a msg_id of at most {MAX_ID_CHARS} characters, its index `chunk` (from 0) below "
                "`chunks`, and its bytes as one frame",
            )
        self._remember(signature, date)
        return Part(header, parent, [bytes(d) for d in data])

    def deserialize(self, frames: Sequence[Frame], expect: frozenset[str]) -> Message:
        """The message of one part that is a whole message (Session.check, then Part.message)."""
        return self.check(frames, expect).message()

    def _fresh_date(self, value: Any) -> float:
        """The header's date as a POSIX time, if it is within the replay window and past the horizon."""
        try:
            date = datetime.strptime(value, _DATE_FORMAT).replace(tzinfo=timezone.utc).timestamp()
        except (TypeError, ValueError):
            raise ProtocolError(
                f"the header's date {_show(value)} is not a UTC time like {timestamp()!r}",
                "send the time of sending as `date`",
            ) from None
        now = time.time()
        if date > now + CLOCK_SKEW_S:
            raise ProtocolError(
                f"a message dated {value} is {date - now:.0f} s ahead of the engine's clock "
                f"(at most {CLOCK_SKEW_S:.0f} s are accepted)",
                "set this machine's clock right (NTP), or send the time of sending as `date`",
            )
        if now - date > REPLAY_WINDOW_S or date <= self._horizon:
            raise ProtocolError(
                f"a message dated {value} is too old (more than {REPLAY_WINDOW_S:.0f} s ago, or older than "
                "requests of yours the engine had to forget)",
                "send requests as they are made; a stored one is refused as a replay",
            )
        return date

    def _remember(self, signature: bytes, date: float) -> None:
        """Keep the signature while a replay of it would still be in the window, at most DIGEST_HISTORY."""
        self._seen[signature] = date
        cutoff = time.time() - REPLAY_WINDOW_S
        while self._seen and next(iter(self._seen.values())) < cutoff:
            self._seen.popitem(last=False)
        while len(self._seen) > DIGEST_HISTORY:
            self._horizon = max(self._horizon, self._seen.popitem(last=False)[1])


def _valid_chunk(header: dict[str, Any], data_frames: int) -> bool:
    msg_id, index, count = header.get("msg_id"), header.get("chunk"), header.get("chunks")
    if not (isinstance(msg_id, str) and 0 < len(msg_id) <= MAX_ID_CHARS and type(index) is int):
        return False
    return type(count) is int and 0 <= index < count and data_frames == 1


def _pieces(payloads: list[bytes]) -> Iterator[Frame]:
    """The payloads laid end to end, in pieces of FRAME_BYTES (the last shorter; one, empty, for
    nothing): views where a piece lies within one payload, a copy of its parts where it spans two."""
    pending: list[memoryview] = []
    held = 0
    for payload in payloads:
        view = memoryview(payload)
        while len(view):
            pending.append(view[: FRAME_BYTES - held])
            held, view = held + len(pending[-1]), view[len(pending[-1]) :]
            if held == FRAME_BYTES:
                yield pending[0] if len(pending) == 1 else b"".join(pending)
                pending, held = [], 0
    if pending or not any(payloads):
        yield b"".join(pending)


def _object(part: bytes) -> dict[str, Any]:
    """A JSON object part of a message; ProtocolError when it is not valid JSON or not an object."""
    try:
        value = json.loads(part, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # incl. UnicodeDecodeError, NaN/Infinity, absurd nesting
        raise ProtocolError("a message part is not valid JSON", "send UTF-8 JSON objects") from None
    if not isinstance(value, dict):
        raise ProtocolError("header, parent header and content must be JSON objects", "send JSON objects, e.g. {}")
    return value


def valid_job_id(job_id: Any) -> bool:
    """Whether `job_id` has the form of the engine's job ids (32 hex digits): safe in a file name."""
    return isinstance(job_id, str) and _JOB_ID.fullmatch(job_id) is not None


def error_content(code: str, message: str, hint: str = "", job_id: str | None = None) -> dict[str, Any]:
    content = {"code": code, "message": message, "hint": hint}
    if job_id is not None:
        content["job_id"] = job_id
    return content


def _show(value: Any) -> str:
    """A received value for an error message: short, and never a repr of an arbitrarily deep structure."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    return f"(a JSON {'object' if isinstance(value, dict) else 'array'})"


def _reject_constant(name: str) -> Any:
    """NaN and Infinity are not JSON: accepting them would make replies that echo them unsendable."""
    raise ValueError(f"{name} is not valid JSON")


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")
