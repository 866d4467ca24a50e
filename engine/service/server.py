"""The engine server: one long-lived process that keeps the CLIP models loaded and runs jobs in turn.

It knows the protocol (bridge.protocol), the queue and the result store, not the methods: it is
handed `run_job(kind, request, progress, preview_every)`, which computes a job, and `describe()`, which says what
the engine runs on (engine.jobs.run_job and Runtime.describe in the real engine).

Two kinds of thread. The main thread owns every ZeroMQ socket and all job state: it answers
requests, keeps the queue and sends progress and results to each job's watchers. A worker thread
only computes (one per job that may run at once: `workers`, 1 unless jobs run on Ray actors,
engine.service.ray_workers; engine.service.worker): it takes one job at a time and reports back
through an in-process socket, so no socket is ever shared between threads. Progress callbacks
raise `Cancelled` when the job's cancel flag is set, which is how a running job stops.

Nothing a client sends can stop the engine: a peer without the key is refused at the handshake
(engine.service.auth's ZAP handler, before zmq reads a message of it), having sent at most one
frame of protocol.FRAME_BYTES (ZMQ_MAXMSGSIZE, which also bounds every frame of an admitted peer);
connections are bounded per address and in all (engine.service.connections), and what libzmq holds
undelivered of each (engine.service.watchdog, on Linux); every part is
checked (bridge.protocol: signed with its identity's own key, its date, its frame count) before
it is interpreted, a large message is put together from its chunks within bounds
(engine.service.intake, bridge.reassembly), every defect gets an error reply, the queue is capped
(per client, and in all: engine.service.queue_policy), an error even in receiving is logged and
the loop goes on, and a job that fails, even by running out of memory, becomes an error reply
while the engine keeps serving.

Serving the network (`listen`): the socket speaks CurveZMQ instead of PLAIN, on loopback and on the
network address alike (engine.service.auth). The handshake's identity (ZAP user id) comes with
every message, is handed to each handler as `sender`, signs every reply, and owns the jobs it
submits: a client sees, fetches and cancels only its own, the queue takes turns between
identities, and only this machine's clients may stop the engine.
"""

from __future__ import annotations

import errno
import functools
import gc
import os
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import zmq

from bridge import connection, protocol
from bridge.atomic import write_atomic
from bridge.errors import EngineError, InputError
from bridge.limits import MAX_NAME_CHARS
from bridge.params import REQUESTS, request_from_json
from bridge.protocol import Message, error_content, valid_job_id
from engine import __version__
from engine.budget import release_to_system
from engine.service import intake, keys, outcomes, snapshots, worker
from engine.service.auth import Admission, Forbidden, Signers
from engine.service.connections import ConnectionGuard
from engine.service.intake import Intake, guarded
from engine.service.lock import acquire_lock
from engine.service.log import log as _log
from engine.service.options import DEFAULTS, ServerOptions
from engine.service.queue_policy import Job, JobQueue, check_room
from engine.service.store import LOCAL_OWNER, JobRecord, ResultStore
from engine.service.worker import Describe, RunJob

ZAP_URL = "inproc://zeromq.zap.01"  # where libzmq asks who may connect (ZeroMQ RFC 27)
MIN_PREVIEW_EVERY_S = 0.5  # the most often a client may ask for a live preview
POLL_MS = 200
TRIM_BYTES = 2**20  # after handling a message this large, freed memory goes back to the system


class EngineServer:
    def __init__(self, run_job: RunJob, describe: Describe, options: ServerOptions = DEFAULTS):
        self.run_job, self.describe, self.options = run_job, describe, options
        # Remote connection files hold keys derived from the signing key: it must outlive a restart.
        self.keys = keys.server_keys() if options.listen else None
        master = protocol.new_key() if self.keys is None else self.keys.signing
        self.admission = Admission(master, self.keys)
        self.signers = Signers(master, options.max_message_bytes)
        self.store = ResultStore(connection.data_dir() / "results", keep_fetched_s=options.keep_fetched_s)
        self.records: dict[str, JobRecord] = self.store.load()
        self.store.prune(self.records)  # now too, not only hourly: an engine often lives less than an hour
        self.queue = JobQueue(options.workers)
        self.rates: dict[str, float] = {}  # kind -> measured seconds per iteration of one sketch
        self.work: queue.Queue[Job | None] = queue.Queue()
        self.context = zmq.Context()
        self.stopping = False
        self.started = time.time()
        self.last_activity = time.monotonic()

    # -- lifecycle ---------------------------------------------------------------------------------

    def serve(self) -> None:
        """Bind, publish the connection file, serve until shutdown, and clean up."""
        # Peers must pass the handshake (bridge.protocol) before zmq reads any message of theirs: a
        # stranger makes the engine hold at most one frame. The handler is bound before the router.
        zap = self.context.socket(zmq.REP)
        zap.bind(ZAP_URL)
        router = self.context.socket(zmq.ROUTER)
        intake.configure(router)
        if self.keys is not None:
            router.curve_server = True
            router.curve_publickey, router.curve_secretkey = self.keys.public, self.keys.secret
        else:
            router.plain_server = True
        router.zap_domain = protocol.PLAIN_USER
        guard = ConnectionGuard(router, intake.UNDELIVERED_BOUND)
        port = router.bind_to_random_port("tcp://127.0.0.1")
        if self.options.listen:
            host, listen_port = self.options.listen
            try:
                router.bind(f"tcp://{host}:{listen_port}")
            except zmq.ZMQError as err:
                zap.close()
                guard.close()
                router.close(linger=0)
                raise EngineError(
                    f"cannot listen on {host}:{listen_port}: {err.strerror}",
                    "pick a free port, and an address of this machine (0.0.0.0 for all of them)",
                ) from None
        events = self.context.socket(zmq.PULL)
        events.bind(worker.EVENTS_URL)
        workers = [
            threading.Thread(
                target=worker.work, args=(self.context, self.work, self.run_job), name=f"engine-worker-{i}", daemon=True
            )
            for i in range(self.options.workers)
        ]
        for thread in workers:
            thread.start()
        info = connection.ConnectionInfo(
            port=port,
            key=self.admission.master,
            pid=os.getpid(),
            version=protocol.VERSION,
            max_message_bytes=self.options.max_message_bytes,
            **self.admission.local_fields(),
        )
        self.connection = connection.file_content(info)
        path = connection.connection_path()
        write_atomic(path, self.connection, mode=0o600)
        engine = self.describe()
        _log(
            f"engine {__version__} ready on {info.url} ({engine['device']}, {engine['models']} models); "
            f"connection file {path}"
        )
        if self.options.listen:
            _log(
                f"also serving {self.options.listen[0]}:{self.options.listen[1]} (CurveZMQ; allowed keys in "
                f"{keys.allowed_folder()})"
            )
        # Modules and models loaded so far live as long as the engine: freezing them keeps the full
        # collection after every job from rescanning ~400k objects (~0.2 s with the GIL held, twice).
        gc.collect()
        gc.freeze()
        try:
            send = functools.partial(self._send, router)
            self._loop(router, events, zap, guard, Intake(self.signers, guard, self.options, send))
        finally:
            zap.close()
            guard.close()
            connection.remove_connection(os.getpid())
            for job in self.queue.jobs.values():
                job.cancel.set()
            deadline = time.monotonic() + 30
            for _ in workers:
                self.work.put(None)
            for thread in workers:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
            for job_id in list(self.queue.jobs):
                outcomes.finish(
                    self,
                    router,
                    job_id,
                    "interrupted",
                    error=error_content(
                        "interrupted",
                        "the engine was stopped before this job finished",
                        "submit the image again",
                        job_id,
                    ),
                )
            router.close(linger=1000)
            events.close()
            self.context.term()
            _log("engine stopped")

    def stop(self, *_signal) -> None:
        self.stopping = True

    def _loop(
        self, router: zmq.Socket, events: zmq.Socket, zap: zmq.Socket, guard: ConnectionGuard, intake: Intake
    ) -> None:
        poller = zmq.Poller()
        for socket in (router, events, zap, guard.monitor):
            poller.register(socket, zmq.POLLIN)
        last_prune = last_beat = time.monotonic()
        while not self.stopping:
            ready = dict(poller.poll(POLL_MS))
            if guard.monitor in ready:
                guarded(guard.on_events)
            if zap in ready:
                while zap.poll(0):
                    zap.send_multipart(self.admission.admit(zap.recv_multipart()))
            if events in ready:
                while events.poll(0):
                    guarded(outcomes.on_event, self, router, events.recv_multipart())
            if router in ready:
                while router.poll(0) and not self.stopping:
                    guarded(self._receive, router, intake)
            intake.expire()
            now = time.monotonic()
            if self.queue.jobs:  # the idle period starts when the last job ends, not at the last request
                self.last_activity = now
            if now - last_beat >= protocol.HEARTBEAT_INTERVAL_S:
                self._heartbeat(router)
                self._republish()
                last_beat = now
            if now - last_prune > 3600:
                self.store.prune(self.records)
                last_prune = now
            idle = self.options.idle_timeout_s
            if idle is not None and not self.queue.jobs and now - self.last_activity > idle:
                _log(f"idle for {idle:.0f} s; exiting")
                break

    def _receive(self, router: zmq.Socket, intake: Intake) -> None:
        """Take the next part; handle the message it completes, then give a large one's memory back."""
        self.last_activity = time.monotonic()
        received = intake.receive(router)
        if received is None:
            return
        sender, ids, msg = received
        size = sum(len(b) for b in msg.buffers)
        try:
            self._handle(router, sender, ids, msg)
        finally:
            del msg, received
            if size >= TRIM_BYTES:
                release_to_system()

    def _heartbeat(self, router: zmq.Socket) -> None:
        """Tell every watcher of a queued or running job that the engine lives (bridge.protocol)."""
        for job_id, job in list(self.queue.jobs.items()):
            self._notify(router, job_id, Message("heartbeat", {"job_id": job_id, "state": job.record.state}))

    def _republish(self) -> None:
        """Write the connection file again if it is gone or not ours (deleted by hand, a cleaner):
        without it no client finds this engine, and a new one would only be refused at the lock."""
        path = connection.connection_path()
        try:
            if path.read_bytes() == self.connection:
                return
        except OSError:
            pass
        try:
            write_atomic(path, self.connection, mode=0o600)
            _log(f"the connection file {path} was missing or changed; wrote it again")
        except (OSError, EngineError) as err:
            _log(f"cannot write the connection file {path}: {err}")

    # -- requests ----------------------------------------------------------------------------------

    def _handle(self, router: zmq.Socket, sender: str, ids: list[bytes], msg: Message) -> None:
        """Handle one checked message of identity `sender`; every failure gets an error reply."""
        handler = getattr(self, "_on_" + msg.msg_type)
        try:
            self.admission.check(sender)
            handler(router, sender, ids, msg)
        except EngineError as err:
            self._reply(router, sender, ids, msg, "error", error_content(err.code, err.message, err.hint))
        except Exception as err:  # a bug in a handler must not take the engine down
            traceback.print_exc()
            content = error_content(
                protocol.INTERNAL, f"internal error handling {msg.msg_type}: {err}", "see the engine's log"
            )
            self._reply(router, sender, ids, msg, "error", content)

    def _own(self, sender: str, job_id: str) -> bool:
        return self.records[job_id].owner == sender

    def _on_status_request(self, router, sender: str, ids, msg) -> None:
        active = self.queue.active_ids()
        self._reply(
            router,
            sender,
            ids,
            msg,
            "status_reply",
            {
                "version": __version__,
                "protocol": protocol.VERSION,
                "pid": os.getpid(),
                **self.describe(),
                "running": next((j for j in self.queue.running if self._own(sender, j)), None),
                "queue": [self._info(j) for j in active if self._own(sender, j)],
                "others": sum(not self._own(sender, j) for j in active),
                "uptime_s": round(time.time() - self.started, 1),
                "rates": self.rates,
            },
        )

    def _on_submit_request(self, router, sender: str, ids, msg) -> None:
        name = msg.content.get("name", "image")
        if not isinstance(name, str) or len(name) > MAX_NAME_CHARS:
            raise InputError(
                f"the job name must be a string of at most {MAX_NAME_CHARS} characters", "send the image's file name"
            )
        request = request_from_json(msg.content.get("job"), msg.buffers)
        preview_every = _preview_every(msg.content.get("preview_every"))
        size = sum(len(b) for b in msg.buffers)
        check_room(self.queue.waiting(), sender, size, self.options)
        kind = next(k for k, cls in REQUESTS.items() if isinstance(request, cls))
        record = JobRecord(
            job_id=os.urandom(16).hex(), name=name, kind=kind, state="queued", created=time.time(), owner=sender
        )
        self.store.save(record)
        self.records[record.job_id] = record
        job = Job(record, request, size, watchers={ids[0]}, preview_every=preview_every)
        self.queue.add(job)
        self._dispatch(router)
        position = self.queue.position(record.job_id)
        job.announced = position or None  # the reply tells a waiting job its place; one that starts gets its 0
        self._reply(router, sender, ids, msg, "submit_reply", {"job_id": record.job_id, "position": position})
        self._announce(router)

    def _on_cancel_request(self, router, sender: str, ids, msg) -> None:
        job_id = self._known(sender, msg.content.get("job_id"))
        job = self.queue.jobs.get(job_id)
        if job is None:
            state = self.records[job_id].state
        elif job_id in self.queue.running:
            job.cancel.set()
            state = "cancelling"
        else:
            job.cancel.set()
            job.request = None  # its image goes now
            outcomes.finish(self, router, job_id, "cancelled", error=worker.cancelled(job_id))
            release_to_system()
            state = "cancelled"
        self._reply(router, sender, ids, msg, "cancel_reply", {"job_id": job_id, "state": state})
        self._announce(router)

    def _on_list_request(self, router, sender: str, ids, msg) -> None:
        jobs = sorted((r for r in self.records.values() if r.owner == sender), key=lambda r: r.created)
        self._reply(router, sender, ids, msg, "list_reply", {"jobs": [self._info(r.job_id) for r in jobs]})

    def _on_fetch_request(self, router, sender: str, ids, msg) -> None:
        job_id = self._known(sender, msg.content.get("job_id"))
        record = self.records[job_id]
        if record.state == "done":
            outcomes.send_result(self, router, ids, msg.header, record)
        elif record.state in protocol.FINISHED:
            self._reply(router, sender, ids, msg, "error", record.error or worker.cancelled(job_id))
        else:
            if msg.content.get("watch"):
                self.queue.jobs[job_id].watchers.add(ids[0])
            self._reply(router, sender, ids, msg, "fetch_reply", record.info(self.queue.position(job_id)))

    def _on_snapshot_request(self, router, sender: str, ids, msg) -> None:
        snapshots.on_request(self, router, sender, ids, msg)

    def _on_shutdown_request(self, router, sender: str, ids, msg) -> None:
        if sender != LOCAL_OWNER:
            raise Forbidden(
                "only a client on the engine's own machine can stop it",
                "ask the engine's administrator (`sketch-abstraction stop` there)",
            )
        self._reply(router, sender, ids, msg, "shutdown_reply", {"interrupted": self.queue.active_ids()})
        self.stopping = True

    def _info(self, job_id: str) -> dict[str, Any]:
        """A job's info for status and list replies, with its last progress while it runs."""
        info = self.records[job_id].info(self.queue.position(job_id))
        job = self.queue.jobs.get(job_id)
        if job is not None and job.progress is not None:
            info["progress"] = job.progress
        return info

    # -- sending -----------------------------------------------------------------------------------

    def _reply(self, router, sender: str, ids, request: Message, msg_type: str, content: dict) -> None:
        self._send(router, sender, ids, Message(msg_type, content, parent=request.header))

    def _notify(self, router, job_id: str, msg: Message) -> None:
        job = self.queue.jobs.get(job_id)
        if job is None:
            return
        for peer in list(job.watchers):  # its owner's connections (only the owner may watch)
            if not self._send(router, job.record.owner, [peer], msg):
                job.watchers.discard(peer)  # the client is gone; its job goes on and waits to be fetched

    def _send(self, router, identity: str, ids: list[bytes], msg: Message) -> bool:
        """Send `msg` (its parts), signed with `identity`'s key, to the connection `ids`; False when the
        peer has gone (ROUTER_MANDATORY) or is not reading (full queue: the rest of a large one is
        not sent, and the client drops what came of it)."""
        try:
            for frames in self.signers.session(identity).parts(msg):
                router.send_multipart([*ids, *frames], flags=zmq.NOBLOCK, copy=False)
            return True
        except zmq.ZMQError as err:
            if err.errno in (errno.EHOSTUNREACH, zmq.EAGAIN):
                return False
            raise

    # -- helpers -----------------------------------------------------------------------------------

    def _known(self, sender: str, job_id: Any) -> str:
        """`job_id` if `sender` owns it; another identity's job is as unknown as a missing one."""
        if not valid_job_id(job_id) or job_id not in self.records or not self._own(sender, job_id):
            raise _UnknownJob(job_id)
        return job_id

    def _dispatch(self, router: zmq.Socket) -> None:
        """Hand the next jobs to the idle workers; each is "running" from then on (position 0)."""
        for job in self.queue.start_next():
            job.record.state = "running"
            outcomes.save_or_log(self, job.record)  # on disk it stays "queued": the same after a crash
            self.work.put(job)

    def _announce(self, router: zmq.Socket) -> None:
        """Tell the watchers of each active job whose position changed (0: it starts)."""
        for job_id in self.queue.active_ids():
            job, position = self.queue.jobs[job_id], self.queue.position(job_id)
            if position != job.announced:
                job.announced = position
                self._notify(router, job_id, Message("queue_update", {"job_id": job_id, "position": position}))


class _UnknownJob(EngineError):
    code = protocol.UNKNOWN_JOB

    def __init__(self, job_id: Any):
        super().__init__(
            f"no job {job_id!r} on this engine (finished results are kept a while, then deleted)",
            "list the engine's jobs with `sketch-abstraction status`",
        )


def _preview_every(value: Any) -> float | None:
    """A submit request's `preview_every`: None, or seconds of at least MIN_PREVIEW_EVERY_S."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= MIN_PREVIEW_EVERY_S:
        raise InputError(
            f"preview_every must be a number of seconds of at least {MIN_PREVIEW_EVERY_S}, got {str(value)[:40]!r}",
            "send e.g. 3, or leave it out for no previews",
        )
    return float(value)


def serve(
    run_job: RunJob,
    describe: Describe,
    options: ServerOptions = DEFAULTS,
    warm_up: Callable[[], None] | None = None,
) -> None:
    """Run an engine until shutdown; refuse (lock.AlreadyRunning) if another engine of this user runs.

    `warm_up` (loading the models) runs after the lock is taken (a refused engine loads nothing) and
    before the connection file appears (a ready engine is a warm one).
    """
    lock = acquire_lock()
    try:
        if warm_up is not None:
            _log(f"loading models on {describe()['device']} ...")
            warm_up()
        server = EngineServer(run_job, describe, options)
        signal.signal(signal.SIGTERM, server.stop)
        signal.signal(signal.SIGINT, server.stop)
        server.serve()
    finally:
        lock.close()
