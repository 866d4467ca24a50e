"""The ZeroMQ bridge on a warm engine: request latency, time to first progress, memory over many jobs.

Starts the real engine (`python -m engine serve`) in temp folders, once per model size, and talks
to it through bridge.client as the Inkscape extension does. For each engine:

  - status round trip (median and p95 over 200),
  - submit -> first progress message, and -> first optimisation step (median over 10 small jobs;
    goal: first progress within 1 s on a warm engine),
  - the engine's RSS (/proc/<pid>/status VmRSS) after one warm-up job and after 100 more small jobs
    (goal: no growth beyond noise).

A small job: one level of 4 strokes, one seed, 5 iterations, an augmentation bank of 4.

Run: python benchmarks/bridge.py [--models tiny-random,random] [--device cpu] [--jobs 100]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks._machine import describe  # noqa: E402
from bridge import connection  # noqa: E402
from bridge.client import EngineClient  # noqa: E402
from bridge.params import ClipassoParams, SketchRequest, request_to_json  # noqa: E402

IMAGE = ROOT / "examples" / "ballerina.png"
SMALL = ClipassoParams(strokes=(4,), seeds=(0,), iterations=5, eval_every=5, aug_bank=4)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def start_engine(models: str, device: str, folder: Path) -> tuple[subprocess.Popen, float]:
    env = dict(
        os.environ,
        SKETCH_ABSTRACTION_RUNTIME_DIR=str(folder / "run"),
        SKETCH_ABSTRACTION_DATA_DIR=str(folder / "data"),
        PYTHONWARNINGS="ignore::UserWarning",
    )
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "serve", "--models", models, "--device", device],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "engine.log", "wb"),  # noqa: SIM115 (the engine writes it for its whole life)
    )
    path = folder / "run" / connection.CONNECTION_FILE
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the {models} engine exited ({proc.returncode}); see {folder / 'engine.log'}")
        try:
            if json.loads(path.read_text())["pid"] == proc.pid:
                return proc, time.perf_counter() - started
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)


def run_job(client: EngineClient, job, buffers) -> tuple[float, float, float]:
    """(s to first progress, s to first optimisation step, s to result), from the submit call."""
    marks: dict[str, float] = {}

    def on_message(msg) -> None:
        if msg.msg_type == "progress":
            now = time.perf_counter()
            marks.setdefault("first", now)
            if msg.content["stage"] == "optimise":
                marks.setdefault("optimise", now)

    t0 = time.perf_counter()
    job_id, _ = client.submit(job, buffers, name=IMAGE.name)
    client.wait(job_id, on_message=on_message, timeout_s=600)
    done = time.perf_counter()
    return marks["first"] - t0, marks["optimise"] - t0, done - t0


def measure(models: str, device: str, status_n: int, first_n: int, jobs_n: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        proc, ready_s = start_engine(models, device, folder)
        info = connection.ConnectionInfo(**json.loads((folder / "run" / connection.CONNECTION_FILE).read_text()))
        client = EngineClient(info, timeout_s=60)
        try:
            job, buffers = request_to_json(SketchRequest(IMAGE, SMALL))
            run_job(client, job, buffers)  # warm-up: first-use costs (kernels, allocator) out of the figures
            latencies = []
            for _ in range(status_n):
                t0 = time.perf_counter()
                client.status()
                latencies.append((time.perf_counter() - t0) * 1000)
            firsts = [run_job(client, job, buffers) for _ in range(first_n)]
            rss_before = rss_mib(proc.pid)
            trend, job_s = [rss_before], []
            for i in range(jobs_n):
                job_s.append(run_job(client, job, buffers)[2])
                if (i + 1) % max(1, jobs_n // 4) == 0:
                    trend.append(rss_mib(proc.pid))
            rss_after = rss_mib(proc.pid)
            client.shutdown()
        finally:
            client.close()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        latencies.sort()
        return {
            "ready_s": ready_s,
            "status_median_ms": statistics.median(latencies),
            "status_p95_ms": latencies[int(0.95 * (len(latencies) - 1))],
            "first_progress_s": statistics.median(f[0] for f in firsts),
            "first_progress_max_s": max(f[0] for f in firsts),
            "first_optimise_s": statistics.median(f[1] for f in firsts),
            "job_s": statistics.median(job_s) if job_s else float("nan"),
            "rss_before": rss_before,
            "rss_after": rss_after,
            "trend": trend,
            "jobs": jobs_n,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny-random,random", help="engines to measure, comma-separated")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--status", type=int, default=200, help="status round trips")
    parser.add_argument("--first", type=int, default=10, help="jobs timed to their first progress")
    parser.add_argument("--jobs", type=int, default=100, help="small jobs between the two RSS readings")
    parser.add_argument(
        "--random-jobs", type=int, default=None, help="small jobs for the real-size engine (default: --jobs)"
    )
    args = parser.parse_args()
    os.environ.setdefault("SKETCH_ABSTRACTION_OFFLINE", "1")

    kinds = [m.strip() for m in args.models.split(",") if m.strip()]
    print(f"machine: {describe(args.device)}")
    print(
        f"small job: {SMALL.strokes[0]} strokes, {len(SMALL.seeds)} seed, {SMALL.iterations} iterations, "
        f"aug bank {SMALL.aug_bank}, {IMAGE.name}; engine on {args.device}\n"
    )
    results = {}
    for kind in kinds:
        jobs = args.random_jobs if kind != "tiny-random" and args.random_jobs is not None else args.jobs
        results[kind] = measure(kind, args.device, args.status, args.first, jobs)

    width = 14
    print(f"{'':44}" + "".join(f"{k:>{width}}" for k in kinds))
    rows = [
        ("engine start to ready (s)", "ready_s", "{:.1f}"),
        (f"status round trip, median of {args.status} (ms)", "status_median_ms", "{:.2f}"),
        ("status round trip, p95 (ms)", "status_p95_ms", "{:.2f}"),
        (f"submit -> first progress, median of {args.first} (s)", "first_progress_s", "{:.3f}"),
        ("submit -> first progress, worst (s)", "first_progress_max_s", "{:.3f}"),
        ("submit -> first optimisation step (s)", "first_optimise_s", "{:.3f}"),
        ("small job, submit -> result, median (s)", "job_s", "{:.2f}"),
        ("jobs between the RSS readings", "jobs", "{}"),
        ("engine RSS before (MiB)", "rss_before", "{:.0f}"),
        ("engine RSS after (MiB)", "rss_after", "{:.0f}"),
    ]
    for label, key, fmt in rows:
        print(f"{label:44}" + "".join(f"{fmt.format(results[k][key]):>{width}}" for k in kinds))
    print(
        f"{'RSS growth (MiB)':44}"
        + "".join(f"{results[k]['rss_after'] - results[k]['rss_before']:>+{width}.1f}" for k in kinds)
    )
    for k in kinds:
        print(f"RSS trend, {k}: " + " -> ".join(f"{v:.0f}" for v in results[k]["trend"]) + " MiB")
    ok = all(r["first_progress_s"] < 1.0 for r in results.values())
    print(f"\ngoal: first progress < 1 s on a warm engine: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
