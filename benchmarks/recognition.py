"""The paper's quality metric: CLIP ViT-B/32 zero-shot recognition of our sketches
(docs/method.md#quality-in-the-paper).

For every labelled image, sketch it at the given stroke counts, render each level at 224 px and
classify it among all labels with the prompt "A sketch of a(n) <class>". Reports top-1 / top-3 per
level (paper: 78% top-1 at 16 strokes, 93% at 32, on 200 SketchyCOCO images of 10 classes).
Needs OpenAI's weights: without them it says so and exits 3.

Folder layout: DIR/<class name>/<image files>.
Run: python benchmarks/recognition.py DIR [--strokes 32,16] [--iterations 2000] [--device cuda]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import engine  # noqa: F401  first: the engine's process settings (engine/__init__.py) before torch loads

# isort: split
import torch

from benchmarks._machine import describe
from bridge.errors import WeightsMissing
from bridge.params import ClipassoParams
from engine.clip.features import normalize
from engine.clip.models import VIT_B32, find_checkpoint
from engine.jobs import SketchRequest, run_sketch
from engine.render import rasterize
from engine.runtime import Runtime

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def prompt(label: str) -> str:
    article = "an" if label[:1].lower() in "aeiou" else "a"
    return f"A sketch of {article} {label}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--strokes", default="32,16")
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--weights-dir")
    args = parser.parse_args()
    try:
        find_checkpoint("RN101", args.weights_dir)
        find_checkpoint(VIT_B32, args.weights_dir)
    except WeightsMissing as err:
        print(f"NOT RUN: this metric needs OpenAI's CLIP weights. {err}", file=sys.stderr)
        return 3
    import open_clip

    classes = sorted(p.name for p in args.folder.iterdir() if p.is_dir())
    samples = [
        (c, f) for c in classes for f in sorted((args.folder / c).iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    runtime = Runtime.create(args.device, "openai", args.weights_dir)
    vit = runtime.clip(VIT_B32)
    tokenizer = open_clip.get_tokenizer(VIT_B32)
    with torch.no_grad():
        text = vit.encode_text(tokenizer([prompt(c) for c in classes]).to(runtime.device))
        text = text / text.norm(dim=-1, keepdim=True)
    strokes = tuple(int(s) for s in args.strokes.split(","))
    params = ClipassoParams(strokes=strokes, iterations=args.iterations)
    hits = {n: [0, 0] for n in strokes}  # top-1, top-3
    print(f"machine: {describe(runtime.device)}; {len(samples)} images, {len(classes)} classes")
    for label, path in samples:
        result = run_sketch(runtime, SketchRequest(path, params))
        for level in result.levels:
            with torch.no_grad():
                image = rasterize(level.points[None].to(runtime.device), params.half_width)
                emb = vit.encode_image(normalize(image))
                emb = emb / emb.norm(dim=-1, keepdim=True)
                ranking = (emb @ text.T)[0].argsort(descending=True).tolist()
            truth = classes.index(label)
            hits[level.strokes][0] += ranking[0] == truth
            hits[level.strokes][1] += truth in ranking[:3]
    for n in strokes:
        top1, top3 = (100 * h / max(1, len(samples)) for h in hits[n])
        print(f"{n:>3} strokes: top-1 {top1:.1f}%  top-3 {top3:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
