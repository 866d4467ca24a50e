"""The engine server's options: one source of its defaults (the CLI's `serve` flags map onto them)."""

from __future__ import annotations

from dataclasses import dataclass

from bridge import protocol


@dataclass(frozen=True)
class ServerOptions:
    idle_timeout_s: float | None = None  # exit after this long with no job and no message
    max_message_bytes: int = protocol.MAX_MESSAGE_BYTES
    keep_fetched_s: float = 86_400.0
    # The queue's limits are per client identity, so that one designer's batch of 500 cannot shut
    # the others out, plus one bound on all of them together, so that many clients cannot take the
    # engine's memory (queued images wait in RAM, undecoded). Defaults: 100 jobs and two full-size
    # messages (512 MiB) per identity; 4 identities' worth (2 GiB) in all: at least four clients can
    # fill their share at once, a few hundred photos of a few MB, and 2 GiB beside the models
    # (~1.5 GiB) and a running job's activations fits any machine that runs a GPU for this.
    max_queued_jobs: int = 100  # jobs of one identity waiting to run, its running ones aside
    max_queued_bytes: int | None = None  # their images and masks together; None: 2 x max_message_bytes
    max_total_queued_bytes: int | None = None  # every identity's together; None: 4 x max_queued_bytes
    # Large messages come in chunks (bridge.reassembly): what all connections' messages in progress
    # may announce together. None: 2 x max_message_bytes (two full-size uploads at once).
    max_receiving_bytes: int | None = None
    listen: tuple[str, int] | None = None  # also serve this network address (CurveZMQ, allowed keys only)
    workers: int = 1  # jobs run at once (run_job is called from that many threads)

    @property
    def queued_bytes_limit(self) -> int:
        return 2 * self.max_message_bytes if self.max_queued_bytes is None else self.max_queued_bytes

    @property
    def receiving_bytes_limit(self) -> int:
        return 2 * self.max_message_bytes if self.max_receiving_bytes is None else self.max_receiving_bytes

    @property
    def total_queued_bytes_limit(self) -> int:
        total = self.max_total_queued_bytes
        return 4 * self.queued_bytes_limit if total is None else total


DEFAULTS = ServerOptions()
