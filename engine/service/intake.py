"""What comes in on the engine's socket: the ROUTER and its limits, and each part received, checked
under its sender's key, put together with its chunks, or answered with an error.

Why parts of a few small frames, in ZeroMQ's model: ZMQ_MAXMSGSIZE is a socket option that limits
each frame (not a message), and libzmq copies it into each connection when it is made, so it
cannot be small until a peer is authenticated and larger after; the ZAP handler sees a peer's
address and credentials only after its first handshake command, whose size MAXMSGSIZE alone
bounds. So every frame is small (protocol.FRAME_BYTES), for strangers and clients alike. ZeroMQ's
RCVHWM counts whole messages and shows no frame of a message before its last; so every message
of the protocol is a part of at most protocol.MAX_PART_FRAMES frames (a large one travels as
chunks, bridge.reassembly), and RCVHWM (PENDING_PER_PEER) bounds what ZeroMQ holds for a
connection: a few parts of a few frames each.

What libzmq cannot bound: a key holder who hand-builds one message of countless frames. No socket
option limits the frames of a message (MAXMSGSIZE is per frame, RCVHWM counts messages, and a
message's frames are queued unseen until its last). So the engine watches the wire instead
(engine.service.watchdog, Linux): a connection on which libzmq holds more undelivered bytes than
UNDELIVERED_BOUND, which no client of the protocol reaches, is ended while the message comes, and
the identity logged (docs/reliability.md: what a key holder can cost). A message of more frames
than MAX_FRAMES that stays under that bound is refused when it arrives, the same way.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from typing import Any

import zmq

from bridge import protocol
from bridge.protocol import Message, ProtocolError, error_content
from bridge.reassembly import Reassembly
from engine.service import wire
from engine.service.auth import Signers
from engine.service.connections import ConnectionGuard, end_connection
from engine.service.log import log
from engine.service.options import ServerOptions

PENDING_PER_PEER = 2  # parts one connection may have waiting in the engine's ZeroMQ (RCVHWM)
MAX_ROUTING_IDS = 4  # routing frames a part may carry ahead of its delimiter (the ROUTER's own first)
MAX_FRAMES = MAX_ROUTING_IDS + protocol.MAX_PART_FRAMES  # more: not a 4.x client; the connection ends
UNDELIVERED_BOUND = wire.undelivered_bound(PENDING_PER_PEER)  # bytes libzmq may hold of one connection

Send = Callable[[str, list[bytes], Message], bool]  # (identity, routing ids, message) -> delivered


def configure(router: zmq.Socket) -> None:
    """The ROUTER's limits. zmq drops a peer that starts a frame over FRAME_BYTES (handshake
    commands included), on its header, before the frame's bytes arrive; a connection's parts beyond
    PENDING_PER_PEER wait in its own socket, not in the engine."""
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    router.setsockopt(zmq.LINGER, 1000)
    router.setsockopt(zmq.MAXMSGSIZE, protocol.FRAME_BYTES + 64)  # + the frame header's room
    router.setsockopt(zmq.RCVHWM, PENDING_PER_PEER)


class Intake:
    """Receives parts, checks each under its sender's Session, and hands on whole messages."""

    def __init__(self, signers: Signers, guard: ConnectionGuard, options: ServerOptions, send: Send):
        self.signers, self.guard, self.send = signers, guard, send
        self.reassembly = Reassembly(options.max_message_bytes, options.receiving_bytes_limit)

    def receive(self, router: zmq.Socket) -> tuple[str, list[bytes], Message] | None:
        """The next part; (sender, routing ids, message) when it completes a message, else None
        (a chunk of one in progress, or a defect, answered with an error reply)."""
        first = router.recv(copy=False)  # the routing id: the ROUTER's, not sent by the peer
        fd, sender = first.get(zmq.SRCFD), _user_id(first)
        frames, count, size = _read(router, first, self.guard.received(fd, sender))
        peer = frames[0].bytes
        views = [frame.buffer for frame in frames]
        del frames
        session = self.signers.session(sender)
        try:
            if count > MAX_FRAMES:
                log(
                    f"a client ({sender or 'no identity'}) sent one message of {count - 1} frames "
                    f"({size / 2**20:.1f} MiB), which ZeroMQ held whole; ended its connection "
                    "(revoke its key if this repeats: `keys revoke NAME`)"
                )
                end_connection(fd)
            ids, rest = session.split_ids(views)
            part = session.check(rest, protocol.REQUESTS)
            msg = self.reassembly.add(peer, sender, part, time.monotonic())
        except ProtocolError as err:
            content = error_content(err.code, err.message, err.hint)
            self.send(sender, [peer], Message("error", content, parent=err.parent))
            return None
        return None if msg is None else (sender, [bytes(i) for i in ids], msg)

    def expire(self) -> None:
        """Drop the messages whose chunks stopped coming, and tell their senders."""
        for stalled in self.reassembly.expire(time.monotonic()):
            content = error_content(
                protocol.BAD_MESSAGE,
                f"the rest of message {stalled.header['msg_id']} did not come within "
                f"{self.reassembly.stall_s:.0f} s; the engine dropped what had come",
                "send it again",
            )
            self.send(stalled.sender, [stalled.connection], Message("error", content, parent=stalled.header))


def _read(router: zmq.Socket, first: zmq.Frame, count_frame: Callable[[int], None]) -> tuple[list[zmq.Frame], int, int]:
    """The rest of the message `first` begins: its first MAX_FRAMES + 1 frames (zmq's buffers, not
    copied), its frame count and its size. Each frame is counted (`count_frame`, the watchdog's)
    as soon as it is read; the frames past MAX_FRAMES are dropped as they are read, so a message
    of many frames costs the engine no Python object per frame."""
    last, frames, count, size = first, [first], 1, len(first)
    while last.more:
        last = router.recv(copy=False)
        count, size = count + 1, size + len(last)
        count_frame(len(last))
        if len(frames) <= MAX_FRAMES:
            frames.append(last)
    return frames, count, size


def guarded(handle: Callable[..., Any], *args: Any) -> None:
    """The last line of defence: whatever still breaks in receiving or handling a message (a bug,
    memory running out) is logged and the message dropped; the loop goes on."""
    try:
        handle(*args)
    except Exception:
        traceback.print_exc()
        log("the message above could not be handled; dropped it")


def _user_id(frame: zmq.Frame) -> str:
    """The identity the handshake gave the message's connection ("" if none: refused by Admission.check)."""
    try:
        return str(frame.get("User-Id") or "")
    except zmq.ZMQError:
        return ""
