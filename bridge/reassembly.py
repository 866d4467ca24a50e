"""Chunked messages put together (bridge.protocol, "Parts and chunks"), within bounds: no ZeroMQ.

A receiver hands every part its Session accepted (signed, fresh, of a known type) to `add`, with
the connection it came on: a whole message comes back at once, a chunk is kept until its message
is complete. Each chunk was checked on its own, so an unsigned or forged one never gets here and
costs nothing beyond itself. The bounds:

- each connection has at most one message in progress (a first chunk of another drops the one in
  progress: its sender gave up on it);
- the size a first chunk announces is within `max_bytes` (TOO_LARGE), and the sizes announced
  by all messages in progress together within `max_total_bytes` (QUEUE_FULL: try again later),
  so that at most that is ever held, whatever the senders do next;
- a chunk out of order, or of another length than announced, ends its message with an error, and
  the rest of a refused message is dropped without a word (one error per message, not per chunk);
- a message whose next chunk has not come for `stall_s` is dropped (`expire`).

The engine keeps one Reassembly for all its connections; a client one for its own.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

from bridge import protocol
from bridge.protocol import Message, Part, ProtocolError

STALL_S = 30.0  # a message whose next chunk has not come for this long is dropped
REFUSED_KEPT = 1024  # refused messages remembered, so that their further chunks go without a reply


@dataclass
class _Assembly:
    sender: str  # the identity that signed it: its error reply is signed for it
    header: dict[str, Any]  # the first chunk's
    parent: dict[str, Any]
    size: int  # announced, content and buffers together
    last: float  # when its latest chunk came
    pieces: list[bytes] = field(default_factory=list)


@dataclass
class Stalled:
    """A message dropped by `expire`: whom to tell."""

    connection: bytes
    sender: str
    header: dict[str, Any]


class Reassembly:
    def __init__(self, max_bytes: int, max_total_bytes: int, stall_s: float = STALL_S):
        self.max_bytes, self.max_total_bytes, self.stall_s = max_bytes, max_total_bytes, stall_s
        self.open: dict[bytes, _Assembly] = {}  # connection -> its message in progress
        self._refused: collections.OrderedDict[tuple[bytes, str], None] = collections.OrderedDict()

    @property
    def reserved(self) -> int:
        """Bytes announced by the messages in progress: the most they will hold."""
        return sum(assembly.size for assembly in self.open.values())

    def add(self, connection: bytes, sender: str, part: Part, now: float) -> Message | None:
        """The message `part` completes (itself when it is a whole one), or None while its message
        is in progress or was refused already; ProtocolError (with the message's header as its
        `parent`) when it ends its message."""
        if not part.chunked:
            return part.message()
        header = part.header
        msg_id, index = header["msg_id"], header["chunk"]  # a str and an int (Session.check)
        if (connection, msg_id) in self._refused:
            return None
        current = self.open.get(connection)
        if index == 0:
            current = self._announce(connection, sender, part, now)
        elif current is None or msg_id != current.header["msg_id"] or index != len(current.pieces):
            expected = "its first chunk" if current is None else f"chunk {len(current.pieces)}"
            raise self._refuse(
                connection,
                msg_id,
                f"chunk {index} of message {msg_id} came out of order (the engine expected {expected})",
                "send a message's chunks in order, one message at a time on a connection",
                header if current is None else current.header,
            )
        elif header.get("msg_type") != current.header["msg_type"] or header.get("chunks") != current.header["chunks"]:
            raise self._refuse(
                connection,
                msg_id,
                f"chunk {index} of message {msg_id} does not match its first chunk's type or count",
                "give every chunk of a message its first chunk's msg_type and chunks",
                current.header,
            )
        piece = part.data[0]
        expected_bytes = protocol.chunk_bytes(current.size, index)
        if len(piece) != expected_bytes:
            raise self._refuse(
                connection,
                msg_id,
                f"chunk {index} of message {msg_id} holds {len(piece)} bytes, not the {expected_bytes} its first "
                f"chunk announced ({current.size} in all)",
                f"send chunks of {protocol.FRAME_BYTES} bytes, the last one shorter, adding up to `sizes`",
                current.header,
            )
        current.pieces.append(piece)
        current.last = now
        if len(current.pieces) < current.header["chunks"]:
            return None
        del self.open[connection]
        return protocol.assemble(current.header, current.parent, current.pieces)

    def expire(self, now: float) -> list[Stalled]:
        """Drop the messages whose next chunk has not come for stall_s; whom to tell."""
        stalled = [c for c, assembly in self.open.items() if now - assembly.last > self.stall_s]
        dropped = [Stalled(c, self.open[c].sender, self.open[c].header) for c in stalled]
        for connection in stalled:
            self._forget(connection, self.open.pop(connection).header["msg_id"])
        return dropped

    def _announce(self, connection: bytes, sender: str, part: Part, now: float) -> _Assembly:
        """Start the message whose first chunk is `part`, if its announced size fits the bounds."""
        abandoned = self.open.pop(connection, None)  # its sender started another: no one waits for it
        if abandoned is not None:
            self._forget(connection, abandoned.header["msg_id"])
        header = part.header
        try:
            size = announced(header, self.max_bytes)
        except ProtocolError:
            self._forget(connection, header["msg_id"])
            raise
        if self.reserved + size > self.max_total_bytes:
            raise self._refuse(
                connection,
                header["msg_id"],
                f"the engine is receiving as much as it takes at once ({protocol.mib(self.reserved)} of large "
                f"messages in progress; at most {protocol.mib(self.max_total_bytes)})",
                "send it again in a moment",
                header,
                protocol.QUEUE_FULL,
            )
        assembly = self.open[connection] = _Assembly(sender, header, part.parent, size, now)
        return assembly

    def _refuse(
        self,
        connection: bytes,
        msg_id: str,
        message: str,
        hint: str,
        parent: dict[str, Any],
        code: str = protocol.BAD_MESSAGE,
    ) -> ProtocolError:
        """End `connection`'s message in progress, remember `msg_id` as refused; the error to raise."""
        current = self.open.pop(connection, None)
        if current is not None:
            self._forget(connection, current.header["msg_id"])
        self._forget(connection, msg_id)
        return ProtocolError(message, hint, code, parent)

    def _forget(self, connection: bytes, msg_id: str) -> None:
        """Drop the rest of message `msg_id` of `connection` when it comes."""
        self._refused[(connection, msg_id)] = None
        while len(self._refused) > REFUSED_KEPT:
            self._refused.popitem(last=False)


def announced(header: dict[str, Any], limit: int) -> int:
    """The size a first chunk announces (its `sizes` added up), checked against its `chunks` and
    `limit` (TOO_LARGE): a ProtocolError before any more of it is held."""
    sizes = header.get("sizes")
    if not isinstance(sizes, list) or not all(type(n) is int and n >= 0 for n in sizes):
        sizes = []  # not valid
    if not 1 <= len(sizes) <= 1 + protocol.MAX_BUFFERS or header.get("chunks") != protocol.chunk_count(sum(sizes)):
        raise ProtocolError(
            "the first chunk's `sizes` does not match its `chunks`",
            f"announce the content's and each buffer's length in `sizes` (at most {1 + protocol.MAX_BUFFERS}), and "
            f"`chunks` = their sum / {protocol.FRAME_BYTES} rounded up (one at least)",
            parent=header,
        )
    size: int = sum(sizes)
    try:
        protocol.check_size(size, limit)
    except ProtocolError as err:
        err.parent = header
        raise
    return size
