"""The watchdog: ends a connection on which libzmq holds more undelivered bytes than a client
following the protocol can make it hold (engine.service.wire), a message of countless frames.

It runs on a thread of its own and looks every INTERVAL_S, not in the main loop: a key holder on
loopback pushes hundreds of MiB a second, and the main thread may be busy with a message for longer.
It sleeps while no connection is open; with many open, its looks are spaced out (CPU_SHARE), so a
flood of connections cannot make it take the engine's processor.
It owns a duplicate of each connection's descriptor (taken by the main thread when the socket
monitor reports the connection): the duplicate names that connection even after libzmq closed
its own descriptor and reused the number, and shutdown(2) on it ends the connection as the peer
leaving would (libzmq frees what it held). The main thread counts each frame it receives for its
connection, found by the socket's inode (ZMQ_SRCFD's descriptor, fstat), so a reused descriptor
number cannot credit the wrong connection; it counts a frame as soon as it has it, so that what
the watchdog takes for held by libzmq is at most one frame more than it is.

Linux only (TCP_INFO's tcpi_bytes_received, Linux >= 4.1, and SIOCINQ); elsewhere it is off
(`active` False) and docs/reliability.md says what a key holder can cost then.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable

from engine.service import wire
from engine.service.log import log

INTERVAL_S = 0.002  # between looks: what a key holder pushes meanwhile passes the bound before the end
CPU_SHARE = 0.1  # with many connections the looks are spaced so that they take at most this of a core


class Watchdog:
    def __init__(self, curve: bool, bound: int):
        self.curve, self.bound = curve, bound
        self.active = _supported()
        self.delivered: dict[int, int] = {}  # socket inode -> wire bytes of the messages the engine received
        self.names: dict[int, str] = {}  # socket inode -> the identity its messages came with
        self._inbox: queue.SimpleQueue[tuple[int, socket.socket | None]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engine-watchdog", daemon=True)
        if self.active:
            self._thread.start()

    # -- the main thread -------------------------------------------------------------------------

    def watch(self, fd: int) -> int | None:
        """Watch connection `fd` (just accepted); its socket inode, None when not watched."""
        if not self.active:
            return None
        try:
            peer = socket.socket(fileno=os.dup(fd))
            inode = os.fstat(peer.fileno()).st_ino
        except OSError:
            return None  # gone already
        self.delivered.setdefault(inode, 0)  # known: its descriptor was reported again before it closed
        self._inbox.put((inode, peer))
        return inode

    def forget(self, inode: int | None) -> None:
        """Connection `inode` is gone: its duplicate is closed, its count dropped."""
        if inode is not None:
            self.delivered.pop(inode, None)
            self.names.pop(inode, None)
            self._inbox.put((inode, None))

    def counter(self, fd: int, sender: str) -> Callable[[int], None]:
        """What counts each frame of a message coming on descriptor `fd` (ZMQ_SRCFD) with identity
        `sender`, by its size, as received from that connection (a no-op where not watched)."""
        try:
            inode = os.fstat(fd).st_ino if self.active else None
        except OSError:
            inode = None
        if inode not in self.delivered:
            return _uncounted
        self.names[inode] = sender
        delivered, curve = self.delivered, self.curve

        def count(size: int) -> None:
            if inode in delivered:
                delivered[inode] += wire.frame_wire_bytes(size, curve)

        return count

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    # -- the watchdog's thread -------------------------------------------------------------------

    def _run(self) -> None:
        peers: dict[int, socket.socket] = {}  # socket inode -> the duplicate of its descriptor
        ended: set[int] = set()
        pause = INTERVAL_S
        try:
            while not self._stop.is_set():
                if not peers:  # nothing to watch: it sleeps until a connection comes
                    with contextlib.suppress(queue.Empty):
                        _take(peers, ended, *self._inbox.get(timeout=0.5))
                elif self._stop.wait(pause):
                    break
                while not self._inbox.empty():
                    _take(peers, ended, *self._inbox.get())
                started = time.perf_counter()
                for inode, peer in peers.items():
                    if inode not in ended and self._over(inode, peer):
                        ended.add(inode)
                pause = max(INTERVAL_S, (time.perf_counter() - started) / CPU_SHARE)
        finally:
            while not self._inbox.empty():
                _take(peers, ended, *self._inbox.get())
            for peer in peers.values():
                peer.close()

    def _over(self, inode: int, peer: socket.socket) -> bool:
        """End connection `inode` if libzmq holds more of it than the bound; whether it did."""
        delivered = self.delivered.get(inode)
        try:
            received = wire.bytes_received(peer.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, wire.TCP_INFO_BYTES))
            if delivered is None or received is None or received - delivered <= self.bound:
                return False  # the cheap test first: SIOCINQ only where the bound may be passed
            held = wire.undelivered(received, _unread(peer), delivered)
            if held <= self.bound:
                return False
            address = peer.getpeername()[0]
            peer.shutdown(socket.SHUT_RDWR)
        except OSError:
            return False
        who = self.names.get(inode) or "no message yet"
        log(
            f"a client ({who}, {address}) made ZeroMQ hold {held / 2**20:.1f} MiB of a message it had not "
            f"finished, more than a client of the protocol can ({self.bound / 2**20:.1f} MiB); ended its "
            "connection (revoke its key if this repeats: `keys revoke NAME`)"
        )
        return True


def _uncounted(size: int) -> None:
    pass


def _take(peers: dict[int, socket.socket], ended: set[int], inode: int, peer: socket.socket | None) -> None:
    """A connection to watch (`peer`), or one gone (None): its duplicate is closed."""
    old = peers.pop(inode, None)
    if old is not None:
        old.close()
    ended.discard(inode)
    if peer is not None:
        peers[inode] = peer


def _unread(peer: socket.socket) -> int:
    """Bytes that arrived on `peer` and are still in the kernel's queue (SIOCINQ, FIONREAD)."""
    import fcntl
    import termios

    return int(struct.unpack("i", fcntl.ioctl(peer.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0])


def _supported() -> bool:
    """Whether this system tells the bytes a TCP connection received (Linux >= 4.1)."""
    if not sys.platform.startswith("linux") or not hasattr(socket, "TCP_INFO"):
        return False
    with contextlib.suppress(OSError), socket.socket() as probe:
        info = probe.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, wire.TCP_INFO_BYTES)
        return wire.bytes_received(info) is not None
    return False
