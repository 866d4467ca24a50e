"""What the Inkscape extension adds to a sketch: the effect's wall time inside real Inkscape 1.2
(headless, Xvfb) with a warm engine and tiny models, side by side with the same Inkscape run doing
only the export (Inkscape's own start and save), and with the engine's own computing time.

The difference between the first and the other two is our overhead: reading the photo, the
ZeroMQ round trips, inserting the layers. Run: python benchmarks/extension.py [--runs 5]
Needs inkscape, xvfb-run and /usr/bin/python3 with lxml and zmq (scripts/test.sh installs them).
"""

from __future__ import annotations

import argparse
import base64
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

OBJECT = "org.sketch-abstraction.object-sketch"
PREFS = {"levels": "8,4", "quality": "custom", "seeds": "1", "iterations": "20", "window": "false"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {
            **os.environ,
            "SKETCH_ABSTRACTION_RUNTIME_DIR": str(tmp / "run"),
            "SKETCH_ABSTRACTION_DATA_DIR": str(tmp / "data"),
            "INKSCAPE_PROFILE_DIR": str(tmp / "profile"),
            "SKETCH_ABSTRACTION_OFFLINE": "1",
        }
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "install.py"),
                "--skip-engine",
                "--profile",
                str(tmp / "profile"),
                "--models",
                "tiny-random",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        (tmp / "profile" / "preferences.xml").write_text(
            '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n<inkscape version="1.2"><group id="extensions" '
            + " ".join(f'{OBJECT}.{k}="{v}"' for k, v in PREFS.items())
            + " /></inkscape>"
        )
        doc = tmp / "doc.svg"
        data = base64.b64encode((ROOT / "examples" / "ballerina.png").read_bytes()).decode()
        doc.write_text(
            '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
            'width="210mm" height="297mm" viewBox="0 0 210 297"><image id="img1" x="10" y="10" '
            f'width="100" height="100" xlink:href="data:image/png;base64,{data}"/></svg>'
        )
        engine = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve", "--models", "tiny-random", "--device", "cpu"],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_ready(env)
            engine_s = _engine_seconds(env, tmp)
            run = lambda effect: _inkscape(env, doc, tmp / "out.svg", effect)  # noqa: E731
            run(True)  # first run warms the disk cache and the engine's code paths
            with_effect = [run(True) for _ in range(args.runs)]
            export_only = [run(False) for _ in range(args.runs)]
        finally:
            subprocess.run([sys.executable, "-m", "engine", "stop"], env=env, capture_output=True)
            engine.wait(timeout=60)
    print(f"machine: {describe()}")
    print(f"Inkscape --batch-process, median of {args.runs} runs, tiny models, warm engine, 8 + 4 strokes x 20 it:")
    print(f"  effect + export        {statistics.median(with_effect):6.2f} s")
    print(f"  export only            {statistics.median(export_only):6.2f} s   (Inkscape's own start and save)")
    print(f"  engine computing time  {engine_s:6.2f} s   (the same job through `submit`)")
    added = statistics.median(with_effect) - engine_s
    print(f"  Inkscape + extension   {added:6.2f} s   (effect - engine: the time we add; goal < 3 s)")
    print(f"  extension alone        {added - statistics.median(export_only):6.2f} s   (also minus Inkscape's own)")
    return 0


def _inkscape(env, doc: Path, out: Path, effect: bool) -> float:
    actions = (f"select-by-id:img1;{OBJECT}.noprefs;" if effect else "") + f"export-filename:{out};export-do"
    started = time.perf_counter()
    subprocess.run(
        [
            "timeout",
            "-k",
            "5",
            "120",
            "xvfb-run",
            "-a",
            "inkscape",
            "--batch-process",
            f"--actions={actions}",
            str(doc),
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - started
    if effect and b"Sketch of" not in out.read_bytes():
        raise SystemExit("the effect inserted no sketch; run the tests (tests/test_inkscape_ext.py)")
    return seconds


def _engine_seconds(env, tmp: Path) -> float:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine",
            "submit",
            str(ROOT / "examples" / "ballerina.png"),
            "--models",
            "tiny-random",
            "--strokes",
            "8,4",
            "--seeds",
            "1",
            "--iterations",
            "20",
            "-o",
            str(tmp / "cli.svg"),
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stderr.rsplit("(", 1)[1].split(" s in the engine")[0])


def _wait_ready(env) -> None:
    deadline = time.monotonic() + 120
    while subprocess.run([sys.executable, "-m", "engine", "status"], env=env, capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise SystemExit("the engine did not start")
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
