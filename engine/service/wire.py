"""A connection's bytes on the wire: what each frame of a message costs there, and how many bytes
libzmq may hold undelivered for a client that follows the protocol.

Why count bytes on the wire: libzmq shows no frame of a message before its last, so a key holder
who hand-builds one message of countless frames makes it hold them all, unseen (engine.service.intake).
The kernel counts what arrived on a TCP connection (TCP_INFO's tcpi_bytes_received) and what is
still unread (SIOCINQ); the difference is what libzmq read. Less the wire bytes of the messages the
engine received on that connection (frame_wire_bytes, exact, so nothing accumulates over a long
connection), it is what libzmq holds undelivered (engine.service.watchdog ends a connection whose
holding passes undelivered_bound).
"""

from __future__ import annotations

import struct

from bridge import protocol

TCP_INFO_BYTES = 256  # asked of getsockopt(TCP_INFO): more than the kernel's struct needs
_BYTES_RECEIVED = struct.Struct("=Q")  # tcpi_bytes_received (Linux >= 4.1), after tcpi_bytes_acked
_BYTES_RECEIVED_AT = 128
CURVE_BOX = 8 + 8 + 16 + 1  # a MESSAGE command's name ("\x07MESSAGE"), nonce, MAC and flags byte
HANDSHAKE_BYTES = 2 * (protocol.FRAME_BYTES + 64) + 1024  # greeting and commands: MAXMSGSIZE bounds each
READ_BATCH = 8192  # libzmq's read buffer (ZMQ_IN_BATCH_SIZE): bytes read, not yet decoded


def frame_wire_bytes(size: int, curve: bool) -> int:
    """The bytes a frame of `size` bytes takes on the wire (ZMTP 3.1: flags, a length of 1 byte up
    to 255 else 8, the body; under CURVE the body is a MESSAGE command boxing the frame)."""
    body = size + CURVE_BOX if curve else size
    return 1 + (1 if body <= 255 else 8) + body


def undelivered_bound(pending_parts: int) -> int:
    """The most a protocol-following client can make libzmq hold undelivered on one connection:
    the parts its pipe takes (RCVHWM, `pending_parts`) of MAX_PART_FRAMES full frames each, the first
    frame of the next (held when the pipe is full), the frame the engine has just read and not yet
    counted, libzmq's read buffer and the handshake."""
    frames = pending_parts * protocol.MAX_PART_FRAMES + 2
    return frames * frame_wire_bytes(protocol.FRAME_BYTES, curve=True) + READ_BATCH + HANDSHAKE_BYTES


def bytes_received(tcp_info: bytes) -> int | None:
    """tcpi_bytes_received of a getsockopt(TCP_INFO) answer; None where the kernel has no such field."""
    if len(tcp_info) < _BYTES_RECEIVED_AT + _BYTES_RECEIVED.size:
        return None
    return int(_BYTES_RECEIVED.unpack_from(tcp_info, _BYTES_RECEIVED_AT)[0])


def undelivered(received: int, unread: int, delivered: int) -> int:
    """What libzmq holds of a connection: what arrived, less what the kernel still holds, less the
    wire bytes of what the engine received. Read `received` before `unread`: bytes arriving
    between the two reads then make it smaller, never larger."""
    return received - unread - delivered
