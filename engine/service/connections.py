"""The bound on the engine's connections: how many a stranger can hold, and its file descriptors.

libzmq accepts every TCP connection on a bound socket and keeps it while the peer handshakes (at
most ZMQ_HANDSHAKE_IVL, HANDSHAKE_S); the ZAP handler is asked only once the peer has sent its
credentials, and what it sends before is bounded per connection by ZMQ_MAXMSGSIZE (one frame). So
what strangers can cost is that frame times the connections they can hold. A socket monitor
reports each accepted connection with its file descriptor and each disconnection; a message
carries the descriptor it came on (ZMQ_SRCFD), which proves that connection passed the handshake.
The guard ends connections (shutdown(2) on the descriptor, which libzmq takes as the peer leaving)
beyond these bounds:

- at most PENDING_PER_ADDRESS connections of one address that have not yet delivered a message,
  and PENDING of all addresses together: the oldest one goes first, so that a flood of strangers
  cannot keep out a client whose handshake takes milliseconds (a client whose connection is ended
  reconnects by itself: ZeroMQ does), and one address's flood ends its own connections first;
- at most TOTAL connections in all: the newest one goes, so that no flood ends the established
  connections of clients, nor takes the engine to its file-descriptor limit (FILES; two
  descriptors a connection: libzmq's and the watchdog's duplicate).

The monitor's reports are read in the main loop, so a burst of connections can pass the bounds for
one turn of the loop before the guard ends them. Each connection kept is also watched for what
libzmq holds of it undelivered (engine.service.watchdog: a message of countless frames).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import zmq
from zmq.utils.monitor import recv_monitor_message

from engine.service.watchdog import Watchdog

HANDSHAKE_S = 30.0  # a peer that has not finished its handshake by then is dropped (ZMQ_HANDSHAKE_IVL)
PENDING = 64  # connections that delivered no message yet (handshaking strangers among them)
PENDING_PER_ADDRESS = 16  # of those, from one IP address (loopback: all of this machine's users)
TOTAL = 256  # all connections
FILES = 4096  # the engine's file-descriptor limit is raised to this (or the hard limit) for them
_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED


@dataclass
class _Connection:
    address: str
    inode: int | None  # its socket's, for the watchdog (None: not watched)
    proven: bool = False  # it delivered a message: it passed the handshake


class ConnectionGuard:
    """Counts the connections of `router` (from its monitor) and ends those beyond the bounds."""

    def __init__(self, router: zmq.Socket, undelivered_bound: int):
        router.setsockopt(zmq.HANDSHAKE_IVL, int(HANDSHAKE_S * 1000))
        self.router = router
        self.watchdog = Watchdog(curve=bool(router.curve_server), bound=undelivered_bound)
        self.monitor = router.get_monitor_socket(_EVENTS)
        self.open: OrderedDict[int, _Connection] = OrderedDict()  # file descriptor -> connection, oldest first
        _raise_file_limit()

    def on_events(self) -> None:
        """Read the monitor's reports, then end what is over the bounds."""
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)
            fd = int(event["value"])
            if event["event"] == zmq.EVENT_ACCEPTED:
                self._accepted(fd)
            else:
                self._forget(fd)

    def received(self, fd: int, sender: str) -> Callable[[int], None]:
        """A message comes on `fd` (ZMQ_SRCFD) with identity `sender`: that connection passed the
        handshake. What counts each of its frames, by size, as no longer held by libzmq."""
        connection = self.open.get(fd)
        if connection is not None:
            connection.proven = True
        return self.watchdog.counter(fd, sender)

    def close(self) -> None:
        self.watchdog.close()
        self.router.disable_monitor()
        self.monitor.close(linger=0)

    def _accepted(self, fd: int) -> None:
        if len(self.open) >= TOTAL:
            end_connection(fd)  # its disconnection is reported; it is never counted
            return
        address = _peer_address(fd)
        self.open[fd] = _Connection(address, self.watchdog.watch(fd))
        same = [f for f, c in self.open.items() if not c.proven and c.address == address]
        self._end_oldest(same, PENDING_PER_ADDRESS)
        self._end_oldest([f for f, c in self.open.items() if not c.proven], PENDING)

    def _end_oldest(self, waiting: list[int], keep: int) -> None:
        """End all but the newest `keep` of the connections `waiting` (oldest first)."""
        for oldest in waiting[: max(0, len(waiting) - keep)]:
            self._forget(oldest)
            end_connection(oldest)

    def _forget(self, fd: int) -> None:
        connection = self.open.pop(fd, None)
        if connection is not None:
            self.watchdog.forget(connection.inode)


def _peer_address(fd: int) -> str:
    """The IP address at the other end of connection `fd` ("" when it is gone already)."""
    try:
        with socket.socket(fileno=os.dup(fd)) as peer:
            return str(peer.getpeername()[0])
    except OSError:
        return ""


def end_connection(fd: int) -> None:
    """End the connection on `fd`; libzmq sees the peer leave, frees it and closes the descriptor."""
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as peer:
        peer.shutdown(socket.SHUT_RDWR)


def _raise_file_limit() -> None:
    try:
        import resource  # POSIX
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FILES if hard == resource.RLIM_INFINITY else min(FILES, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
