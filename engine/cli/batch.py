"""`sketch-abstraction batch`: a large set of photos through the engine (this computer's, or a shared
one with --remote), resumable.

A photo whose SVG in --out-dir exists and parses is done: a second run skips it. The ids of jobs
submitted but not yet written are kept in DIR/.sketch-abstraction-batch.json, so a run after an
interruption (Ctrl-C, a killed terminal, a reboot of the laptop while the engine runs on) follows
those jobs instead of submitting the photos again. At most --in-flight jobs wait on the engine at
once, which keeps its queue open to everyone else; a photo the engine refuses because its queue is
full (this client's share, or the engine's memory bound) waits for a job to finish and is submitted
again, never failed. Torch-free: it starts at once.
"""

from __future__ import annotations

import collections
import glob
import sys
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.atomic import write_atomic
from bridge.errors import EngineError, InputError, exit_code_for
from bridge.files import open_regular
from bridge.params import request_to_json
from bridge.protocol import QUEUE_FULL, UNKNOWN_JOB
from engine.cli.batch_folder import SUBMITTING, State, folder_lock
from engine.cli.client import client_errors, connect_client, printable
from engine.cli.job_options import add_job_options, job_request
from engine.cli.outputs import writable_file, writing

if TYPE_CHECKING:
    from tqdm import tqdm

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif"})
GONE = frozenset({UNKNOWN_JOB, "interrupted"})  # a followed job the engine no longer has: submit again
QUEUE_FULL_WAIT_S = 2.0


def register(commands) -> None:
    batch = commands.add_parser(
        "batch",
        help="sketch a large set of photos (folders, globs) on the engine; resumes after an interruption",
        description="Sketch every photo of INPUT (files, folders, globs such as 'shots/*.jpg') into --out-dir, "
        "one SVG each, on this computer's engine or a shared one (--remote). Run the same command again "
        "after an interruption: finished photos are skipped, jobs still on the engine are picked up.",
    )
    batch.add_argument("inputs", nargs="+", metavar="INPUT", help="photos, folders of photos, or quoted globs")
    batch.add_argument("--out-dir", required=True, help="folder for the SVGs, named after the photos (created)")
    batch.add_argument(
        "--in-flight",
        type=int,
        default=8,
        metavar="N",
        help="jobs waiting on the engine at once (default: 8; more for an engine with several GPUs)",
    )
    batch.add_argument("-q", "--quiet", action="store_true", help="no progress bar (the summary still prints)")
    add_job_options(batch)
    batch.set_defaults(run=client_errors(_batch))


def photos_of(inputs: list[str]) -> list[Path]:
    """The photos INPUTs name, in order, each once; InputError for an input that names none."""
    found: dict[Path, None] = {}
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            matches = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.is_file():
            matches = [path]
        else:
            matches = sorted(Path(p) for p in glob.glob(text) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not matches:
            raise InputError(
                f"{text} names no photo (no such file, and no image file in that folder or glob)",
                "check the path; quote globs ('shots/*.jpg') or let the shell expand them",
            )
        found.update(dict.fromkeys(p.resolve() for p in matches))
    return list(found)


def svg_for(photo: Path, out_dir: Path) -> Path:
    return out_dir / (photo.stem + ".svg")


def complete(svg: Path) -> bool:
    """Whether `svg` is a whole SVG document (a result written before; not a fragment or another file)."""
    try:
        with open_regular(svg, "the SVG") as f:  # never blocks on a FIFO (_batch refuses those first)
            return ElementTree.parse(f).getroot().tag.endswith("svg")
    except (OSError, InputError, ElementTree.ParseError):
        return False


@dataclass
class Outcome:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[Path, EngineError] = field(default_factory=dict)  # photo -> why (message, hint, code)


class OverallBar:
    """One bar for the whole set on stderr: photos done of all, failures, the running job, ETA."""

    def __init__(self, total: int, quiet: bool):
        self.bar: tqdm | None = None
        if not quiet and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="photo", file=sys.stderr, dynamic_ncols=True, desc="batch")

    def step(self, failed: int) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"{failed} failed" if failed else "")

    def now(self, name: str, msg) -> None:
        if self.bar is not None and msg.msg_type == "progress":
            c = msg.content
            self.bar.set_postfix_str(f"{printable(name)}: {c['stage']} {c['iteration']}/{c['total']}")

    def waiting(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str("the engine's queue is full: waiting for room")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _batch(args) -> int:
    if not 1 <= args.in_flight <= 100:
        raise InputError("--in-flight must be between 1 and 100", "e.g. --in-flight 8")
    photos = photos_of(args.inputs)
    out_dir = Path(args.out_dir)
    outs = collections.Counter(svg_for(p, out_dir).name for p in photos)
    clash = [p for p in photos if outs[svg_for(p, out_dir).name] > 1]
    if clash:
        raise InputError(
            f"{clash[0]} and {clash[1]} would both write {svg_for(clash[0], out_dir)}",
            "sketch photos of the same name in separate batches (separate --out-dir)",
        )
    job_request(args, photos[0])  # the options, checked once before anything is sent
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out-dir {out_dir} is not a folder", "pass a folder (it is created if missing)")
    with writing(out_dir, "--out-dir"):
        out_dir.mkdir(parents=True, exist_ok=True)
    for photo in photos:  # a FIFO or device at an output would block or be refused only after the work
        writable_file(svg_for(photo, out_dir), "--out-dir")
    with folder_lock(out_dir):
        return _batch_in(args, photos, out_dir)


def _batch_in(args, photos: list[Path], out_dir: Path) -> int:
    """The run itself, with the output folder's lock held."""
    state = State(out_dir)
    outcome = Outcome()
    todo: collections.deque[Path] = collections.deque()
    for photo in photos:
        if complete(svg_for(photo, out_dir)):
            outcome.skipped.append(photo)
            state.jobs.pop(str(photo), None)
        else:
            todo.append(photo)
    bar = OverallBar(len(todo), args.quiet)
    try:
        if todo:
            with connect_client(args, start=True) as client:
                _run(client, args, todo, out_dir, state, outcome, bar)
    except KeyboardInterrupt:
        bar.close()
        print(
            f"interrupted after {len(outcome.written)} of {len(todo)} photo(s); the same command resumes "
            "(jobs already on the engine are picked up, not redone)",
            file=sys.stderr,
        )
        return 130
    bar.close()
    return _summary(photos, outcome)


def _run(client, args, todo: collections.deque, out_dir: Path, state: State, outcome: Outcome, bar) -> None:
    """Keep up to --in-flight jobs on the engine; write each result as it comes, in order."""
    from bridge.client import JobFailed

    in_flight: collections.deque[tuple[Path, str]] = collections.deque()
    if any(mark.startswith(SUBMITTING) for mark in state.jobs.values()):
        state.adopt(client.jobs())
    while todo or in_flight:
        while todo and len(in_flight) < args.in_flight:
            photo = todo[0]
            job_id = state.jobs.get(str(photo))
            if job_id is None:
                try:
                    job, buffers = request_to_json(job_request(args, photo))
                    state.set(photo, f"{SUBMITTING}{time.time() - 1:.3f}")  # a second of clock slack
                    job_id, _ = client.submit(job, buffers, photo.name)
                except JobFailed as err:
                    state.set(photo, None)
                    if err.code == QUEUE_FULL:  # our share, or the engine's room, is taken: wait, then again
                        bar.waiting()
                        if not in_flight:
                            time.sleep(QUEUE_FULL_WAIT_S)
                        break
                    _fail(todo.popleft(), EngineError(err.message, err.hint), err.code, outcome, bar)
                    continue
                except EngineError as err:  # unreadable here (missing, too large)
                    _fail(todo.popleft(), err, err.code, outcome, bar)
                    continue
                state.set(photo, job_id)
            in_flight.append((todo.popleft(), job_id))
        if not in_flight:
            continue
        photo, job_id = in_flight.popleft()
        try:
            result = client.wait(job_id, on_message=lambda msg, name=photo.name: bar.now(name, msg))
        except JobFailed as err:
            state.set(photo, None)
            if err.code in GONE:  # the engine lost it (restarted, or pruned it): submit it again
                todo.appendleft(photo)
            else:
                _fail(photo, EngineError(err.message, err.hint), err.code, outcome, bar)
            continue
        out = svg_for(photo, out_dir)
        try:
            with writing(out, "--out-dir"):
                write_atomic(out, result.svg)
        except EngineError as err:
            kept = EngineError(err.message, f"{err.hint}; the engine keeps job {job_id} for a day")
            _fail(photo, kept, err.code, outcome, bar)
            continue
        state.set(photo, None)
        outcome.written.append(photo)
        bar.step(len(outcome.failed))


def _fail(photo: Path, err: EngineError, code: str, outcome: Outcome, bar) -> None:
    err.code = code
    outcome.failed[photo] = err
    bar.step(len(outcome.failed))


def _summary(photos: list[Path], outcome: Outcome) -> int:
    """The table at the end: every photo is counted once, every failure named with its reason."""
    print(
        f"batch: {len(photos)} photo(s): {len(outcome.written)} written, {len(outcome.skipped)} already done "
        f"(skipped), {len(outcome.failed)} failed"
    )
    if outcome.failed:
        width = min(40, max(len(p.name) for p in outcome.failed))
        print(f"  {'photo':<{width}}  reason")
        for photo, err in outcome.failed.items():
            hint = f" ({err.hint})" if err.hint else ""
            print(f"  {printable(photo.name):<{width}}  {printable(err.message)}{printable(hint)}")
        return exit_code_for(next(iter(outcome.failed.values())).code)
    return 0
