"""The light client of the engine: pyzmq and the standard library only, never torch.

It finds the engine through the connection file, starts it when it is not running
(bridge.launcher), and speaks bridge.protocol over one DEALER socket: a large request (an image)
goes as chunks, each sent when the engine's socket takes it, and stops at the engine's refusal; a
large reply is put together by bridge.reassembly. Every receive goes through poll with a timeout,
so a dead engine is noticed instead of waited on forever.

    with EngineClient.connect(start=[python, "-m", "engine", "serve"]) as client:
        job_id, position = client.submit(job, buffers, name="photo.png")
        result = client.wait(job_id, on_message=print)
        Path("photo.svg").write_bytes(result.svg)
"""

from __future__ import annotations

import collections
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from bridge import connection, protocol
from bridge.client_errors import ClientError as ClientError  # the errors it raises, importable from here
from bridge.client_errors import EngineUnavailable as EngineUnavailable
from bridge.client_errors import JobFailed as JobFailed
from bridge.client_errors import Refused as Refused
from bridge.errors import EngineError
from bridge.launcher import READY_TIMEOUT_S, start_engine
from bridge.protocol import Message, ProtocolError
from bridge.reassembly import Reassembly

DEFAULT_TIMEOUT_S = 10.0  # for one request's reply
PAUSED_CHECK_S = 0.5  # how often a wait for this computer's engine checks whether it is paused
VERSION_MISMATCH = "version_mismatch"


@dataclass
class JobResult:
    job_id: str
    name: str
    kind: str
    svg: bytes
    notes: list[str] = field(default_factory=list)
    seconds: float | None = None


class EngineClient:
    def __init__(
        self,
        info: connection.ConnectionInfo,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        heartbeat_timeout_s: float = protocol.HEARTBEAT_TIMEOUT_S,
    ):
        self.info, self.timeout_s, self.heartbeat_timeout_s = info, timeout_s, heartbeat_timeout_s
        self.session = protocol.Session(info.key)
        self.replies = Reassembly(self.session.max_bytes, self.session.max_bytes)  # one in progress at most
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 200)
        if info.curve:
            self.socket.curve_serverkey = info.server_key.encode("ascii")
            self.socket.curve_publickey = info.public_key.encode("ascii")
            self.socket.curve_secretkey = info.secret_key.encode("ascii")
        else:
            self.socket.plain_username = protocol.PLAIN_USER
            self.socket.plain_password = protocol.plain_password(info.key)
        # Handshake refusals (a key not or no longer allowed) are named, not waited out.
        self._monitor = self.socket.get_monitor_socket(_REFUSED_EVENTS)
        self.socket.connect(info.url)
        self._unclaimed: collections.deque[Message] = collections.deque()  # job messages seen early
        self._last_heard = time.monotonic()  # when the engine last sent anything

    @classmethod
    def connect(
        cls,
        start: list[str] | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        remote: str | os.PathLike[str] | None = None,
    ) -> EngineClient:
        """A client of the running engine; with `start` (the engine's command line), start one if
        none runs and wait until it answers, at most `ready_timeout_s`. With `remote` (a remote
        connection file), a client of that machine's engine instead (never started from here)."""
        if remote is not None:
            try:
                info: connection.ConnectionInfo | None = connection.read_remote(Path(remote))
            except EngineError as err:
                raise ClientError(err.message, err.hint, "bad_connection_file") from None
        else:
            info = connection.find_engine()
        if info is None:
            holder = connection.lock_holder()
            if start is None and holder:
                raise EngineUnavailable(
                    f"an engine (pid {holder}) is running but has no connection file",
                    f"if it is still loading its models, try again in a minute; otherwise end it with `kill {holder}`",
                    "no_connection_file",
                )
            if start is None:
                raise EngineUnavailable(
                    "the engine is not running", "start it with `sketch-abstraction serve`", "not_running"
                )
            info = start_engine(start, ready_timeout_s)
        if info.version != protocol.VERSION and info.remote:
            raise ClientError(
                f"the remote connection file is for protocol {info.version}, this client speaks {protocol.VERSION}",
                "use the same version as the shared engine, and a connection file exported by it (`keys export`)",
                VERSION_MISMATCH,
            )
        if info.version != protocol.VERSION:
            raise ClientError(
                f"the running engine speaks protocol {info.version}, this client {protocol.VERSION}",
                "stop that engine (`sketch-abstraction stop`); the next job starts one of this "
                "version. After an update, also re-run `python3 install.py` for Inkscape",
                VERSION_MISMATCH,
            )
        client = cls(info, timeout_s)
        try:
            client.status()
        except BaseException:
            client.close()
            raise
        return client

    def __enter__(self) -> EngineClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.socket.disable_monitor()
        self._monitor.close()
        self.socket.close()
        self.context.term()

    # -- requests ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self._request("status_request").content

    def submit(
        self, job: dict[str, Any], buffers: list[bytes], name: str, preview_every: float | None = None
    ) -> tuple[str, int]:
        """Queue a job (bridge.params.request_to_json's form); returns (job id, queue position). With
        `preview_every` (seconds) its progress messages carry a PNG of the sketch so far that often."""
        content: dict[str, Any] = {"job": job, "name": name}
        if preview_every is not None:
            content["preview_every"] = preview_every
        reply = self._request("submit_request", content, buffers)
        return reply.content["job_id"], reply.content["position"]

    def cancel(self, job_id: str) -> str:
        """Cancel a queued or running job; returns its state ("cancelled", "cancelling", or its end)."""
        return str(self._request("cancel_request", {"job_id": job_id}).content["state"])

    def snapshot(self, job_id: str) -> bytes:
        """The SVG of a running object sketch's best strokes of every level so far ("Insert it as it is
        now"); JobFailed (code not_running) for a job not running or not yet evaluated."""
        return bytes(self._request("snapshot_request", {"job_id": job_id}).buffers[0])

    def jobs(self) -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = self._request("list_request").content["jobs"]
        return jobs

    def fetch(self, job_id: str) -> JobResult | dict[str, Any]:
        """The finished result, or the job's info while it is queued or running (JobFailed if it failed)."""
        reply = self._request("fetch_request", {"job_id": job_id}, expect=("result", "fetch_reply"))
        return _result(reply) if reply.msg_type == "result" else reply.content

    def shutdown(self) -> list[str]:
        """Stop the engine; returns the ids of the jobs this interrupted."""
        interrupted: list[str] = self._request("shutdown_request").content["interrupted"]
        return interrupted

    def wait(
        self, job_id: str, on_message: Callable[[Message], None] | None = None, timeout_s: float | None = None
    ) -> JobResult:
        """Follow a job to its end, passing each queue_update and progress to `on_message`.

        Raises JobFailed (job error, cancelled), EngineUnavailable (engine died) or TimeoutError
        (`timeout_s` passed; the job keeps running and can be fetched later).
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        reply = self._request("fetch_request", {"job_id": job_id, "watch": True}, expect=("result", "fetch_reply"))
        if reply.msg_type == "result":
            return _result(reply)
        while True:
            msg = self._next_job_message(job_id, deadline)
            if msg.msg_type == "result":
                return _result(msg)
            if msg.msg_type == "error":
                raise JobFailed(msg.content)
            if on_message is not None:
                on_message(msg)

    # -- plumbing ------------------------------------------------------------------------------

    def _request(
        self,
        msg_type: str,
        content: dict[str, Any] | None = None,
        buffers: list[bytes] | None = None,
        expect: tuple[str, ...] | None = None,
    ) -> Message:
        request = Message(msg_type, content or {}, buffers or [])
        self._send(request)
        expect = expect or (msg_type.replace("_request", "_reply"),)
        sent = time.monotonic()
        deadline = sent + self.timeout_s
        while True:
            try:
                msg = self._receive(deadline)
            except Refused:
                raise
            except EngineUnavailable:
                raise self._silent(time.monotonic() - sent) from None
            if msg.msg_type == "heartbeat":
                continue  # it says the engine lives; _receive noted that
            if msg.msg_type == "error" and not msg.parent and "job_id" not in msg.content:
                # The engine rejected our request before it could read its header (too large,
                # malformed): requests go one at a time over one ordered socket, so it is this one's.
                raise JobFailed(msg.content)
            if msg.parent.get("msg_id") != request.msg_id:
                self._unclaimed.append(msg)  # progress of a job, to be read by wait()
            elif msg.msg_type == "error":
                raise JobFailed(msg.content)
            elif msg.msg_type in expect:
                return msg
            else:
                raise ClientError(
                    f"unexpected {msg.msg_type} in reply to {msg_type}",
                    "update the client and the engine together",
                    protocol.BAD_MESSAGE,
                )

    def _next_job_message(self, job_id: str, deadline: float | None) -> Message:
        for msg in list(self._unclaimed):
            if msg.content.get("job_id") == job_id:
                self._unclaimed.remove(msg)
                return msg
        while True:
            silence_end = self._last_heard + self.heartbeat_timeout_s  # heartbeats come every second
            until = silence_end if deadline is None else min(silence_end, deadline)
            try:
                msg = self._receive(until)
            except Refused:
                raise
            except EngineUnavailable:
                if until == deadline:
                    raise TimeoutError(f"job {job_id} is still running after the time limit") from None
                raise self._silent(time.monotonic() - self._last_heard, job_id) from None
            if msg.msg_type == "heartbeat":
                continue
            if msg.content.get("job_id") == job_id:
                return msg
            if msg.msg_type in ("result", "error"):
                self._unclaimed.append(msg)  # another job's end, for a later wait()

    def _silent(self, waited_s: float, job_id: str | None = None) -> EngineUnavailable:
        """The error for an engine that sent nothing in time: gone, or running but not answering
        (stopped with SIGSTOP or Ctrl-Z, or hung), which are fixed differently."""
        pid = self.info.pid
        doing = f" while job {job_id} was running" if job_id else ""
        if self.info.remote:
            return EngineUnavailable(
                f"{self.info.where} has not answered for {waited_s:.0f} s{doing}",
                "check the network and that the engine runs there (its administrator: `sketch-abstraction "
                "status`); a job it has goes on and can be fetched later",
                "no_answer",
            )
        if not connection.pid_alive(pid):
            return EngineUnavailable(
                f"the engine (pid {pid}) stopped{doing}",
                f"see its log in {connection.runtime_dir() / connection.LOG_FILE}, then submit again",
                "engine_died",
            )
        return EngineUnavailable(
            f"the engine (pid {pid}) is running but has not answered for {waited_s:.0f} s{doing}: "
            "it is stopped or hung",
            f"if it was paused (Ctrl-Z, kill -STOP), resume it with `kill -CONT {pid}`; "
            "otherwise end it with `sketch-abstraction stop`",
            "not_answering",
        )

    def _send(self, msg: Message) -> None:
        """Send `msg` part by part, each once the socket takes it (within timeout_s); a chunked
        upload stops at the engine's refusal of it (JobFailed), not after its last chunk."""
        try:
            parts = self.session.parts(msg, self.info.max_message_bytes)
        except ProtocolError as err:
            raise ClientError(err.message, err.hint, err.code) from None
        for index, frames in enumerate(parts):
            while index and self.socket.poll(0):  # between chunks: no reply but a refusal can come yet
                self._early_reply(msg)
            try:
                if not self.socket.poll(int(self.timeout_s * 1000), zmq.POLLOUT):
                    raise zmq.Again()
                self.socket.send_multipart(frames, flags=zmq.NOBLOCK)
            except zmq.Again:
                raise EngineUnavailable(
                    "the engine is not accepting messages", "check `sketch-abstraction status`; restart it if it hangs"
                ) from None

    def _early_reply(self, request: Message) -> None:
        """Read what came while `request`'s chunks are being sent: its refusal ends the upload
        (JobFailed); anything else is kept for later, as _request keeps it."""
        msg = self._take()
        if msg is None or msg.msg_type == "heartbeat":
            return
        ours = msg.parent.get("msg_id", request.msg_id) == request.msg_id
        if msg.msg_type == "error" and ours and "job_id" not in msg.content:
            raise JobFailed(msg.content)
        self._unclaimed.append(msg)

    def _receive(self, deadline: float) -> Message:
        """The next well-formed message before `deadline`; EngineUnavailable when none comes, or
        at once when this computer's engine is paused (SIGSTOP, Ctrl-Z): it cannot answer."""
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        while True:
            left_s = deadline - time.monotonic()
            wait_ms = max(0, math.ceil(min(left_s, PAUSED_CHECK_S) * 1000))
            ready = dict(poller.poll(wait_ms))
            if self._monitor in ready:
                self._check_refused()
                continue
            if self.socket not in ready:
                if left_s <= PAUSED_CHECK_S or (not self.info.remote and connection.paused(self.info.pid)):
                    raise EngineUnavailable(
                        f"no answer from the engine at {self.info.url} within the time limit",
                        "check `sketch-abstraction status`; restart the engine if it hangs",
                        "no_answer",
                    )
                continue
            msg = self._take()
            if msg is not None:
                return msg

    def _take(self) -> Message | None:
        """The message the next part on the socket completes; None for a chunk of one in progress,
        or for a part not from our engine (or damaged): never acted on."""
        frames = self.socket.recv_multipart()
        try:
            part = self.session.check(frames, protocol.REPLIES)
            self._last_heard = time.monotonic()
            return self.replies.add(b"", "", part, self._last_heard)
        except ProtocolError:
            return None

    def _check_refused(self) -> None:
        """Raise EngineUnavailable ("refused") if the engine refused our handshake."""
        event = recv_monitor_message(self._monitor)
        if event["event"] & _REFUSED_EVENTS:
            if self.info.remote:
                raise Refused(
                    f"{self.info.where} refused this connection file's key (not allowed, or revoked)",
                    "ask the engine's administrator for a new connection file (`keys new`, `keys export`)",
                    "refused",
                )
            raise Refused(
                f"{self.info.where} refused this client's credentials",
                "the connection file changed under it: try again, or restart the engine (`sketch-abstraction stop`)",
                "refused",
            )


# The handshake events that mean "the engine will not talk to us" (libzmq >= 4.3).
_REFUSED_EVENTS = getattr(zmq, "EVENT_HANDSHAKE_FAILED_AUTH", 0) | getattr(zmq, "EVENT_HANDSHAKE_FAILED_PROTOCOL", 0)


def _result(msg: Message) -> JobResult:
    c = msg.content
    if not msg.buffers:
        raise ClientError("the engine sent a result without its SVG", "fetch the job again", protocol.BAD_MESSAGE)
    return JobResult(
        c["job_id"], c.get("name", ""), c.get("kind", ""), msg.buffers[0], c.get("notes") or [], c.get("seconds")
    )
