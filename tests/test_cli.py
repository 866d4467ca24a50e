"""The `sketch-abstraction sketch` command end to end with tiny random CLIP models: the SVG it
writes, its options, and how it refuses bad input (exit code, one-line message, no file left)."""

from __future__ import annotations

import io
import os
import resource
import stat
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from lxml import etree
from PIL import Image

from bridge.errors import InputError
from bridge.params import ClipassoParams, SceneParams
from bridge.seeds import job_seeds
from engine.cli import main
from engine.clip.models import OFFLINE_ENV
from engine.render import diffvg
from tests.harness.paths import ANIMAL, BALLERINA, BALLERINA_MASK, BIRD, FIELD, FIELD_MASK, VASE
from tests.sketch_svg import svg_to_sketch

REPO = Path(__file__).resolve().parents[1]
FAST = [
    "--models",
    "tiny-random",
    "--device",
    "cpu",
    "--strokes",
    "4,2",
    "--seeds",
    "1",
    "--iterations",
    "2",
    "--aug-bank",
    "4",
]

pytestmark = pytest.mark.filterwarnings("ignore:.*meaningless:UserWarning")


def sketch(image, out, *extra, quiet=True) -> int:
    """Run the CLI in-process with fast settings; `extra` options override them."""
    argv = ["sketch", str(image), "-o", str(out), *FAST, *(["-q"] if quiet else []), *map(str, extra)]
    return main(argv)


def read(svg: Path):
    data = svg.read_bytes()
    return svg_to_sketch(data), etree.fromstring(data)


@pytest.fixture
def out_dir(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


# --- what a sketch looks like ---------------------------------------------------------------------


def test_one_layer_per_level_in_the_photos_pixel_space(out_dir):
    svg = out_dir / "bird.svg"
    assert sketch(BIRD, svg, "--strokes", "8,4,2") == 0
    result, root = read(svg)
    assert root.get("viewBox") == "0 0 300 300"
    assert (result.width, result.height) == (300, 300)
    assert [layer.label for layer in result.layers] == ["8 strokes", "4 strokes", "2 strokes"]
    assert [len(layer.points) for layer in result.layers] == [8, 4, 2]
    assert [layer.visible for layer in result.layers] == [True, False, False]
    # Default width: 3 px on the 224 canvas, scaled to the photo.
    assert result.layers[0].width == pytest.approx(3 * 300 / 224, abs=1e-3)
    assert sorted(os.listdir(out_dir)) == ["bird.svg"], "no temp file left behind"


def test_start_points_land_on_the_subjects_edges_in_the_photo(out_dir):
    # One iteration keeps the initial strokes, which start on edges of the subject: mapped back to
    # the photo they must sit on (or right next to) the bird, not on its white background.
    svg = out_dir / "f.svg"
    assert sketch(BIRD, svg, "--strokes", "24", "--iterations", "1") == 0
    result, _ = read(svg)
    photo = Image.open(BIRD).convert("RGBA")
    white = Image.new("RGBA", photo.size, "white")
    gray = np.asarray(Image.alpha_composite(white, photo).convert("L"))
    subject = gray < 230
    for x, y in result.layers[0].points[:, 0]:
        c, r = int(x), int(y)
        assert subject[max(r - 5, 0) : r + 6, max(c - 5, 0) : c + 6].any(), (x, y)


def test_a_non_square_photo_keeps_its_size_and_strokes_start_inside(tmp_path, out_dir):
    image = tmp_path / "vase_crop.png"
    Image.open(VASE).crop((0, 50, 240, 200)).save(image)  # cuts through the vase
    svg = out_dir / "vase.svg"
    assert sketch(image, svg, "--strokes", "32,16", "--iterations", "1") == 0
    result, root = read(svg)
    assert root.get("viewBox") == "0 0 240 150"
    assert (result.width, result.height) == (240, 150)
    for layer in result.layers:
        start = layer.points[:, 0]
        assert ((start >= 0) & (start <= [240, 150])).all(), "no stroke starts in the white padding"


def test_control_points_2_gives_straight_segments(out_dir):
    svg = out_dir / "s.svg"
    assert sketch(ANIMAL, svg, "--control-points", "2") == 0
    result, root = read(svg)
    paths = root.findall(".//{http://www.w3.org/2000/svg}path")
    assert len(paths) == 6
    assert all(" L " in p.get("d") and " C " not in p.get("d") for p in paths)
    assert all(layer.points.shape[1] == 2 for layer in result.layers)


def test_width_sets_the_svg_stroke_width_in_photo_pixels(out_dir):
    svg = out_dir / "w.svg"
    assert sketch(BIRD, svg, "--width", "6") == 0
    result, root = read(svg)
    assert all(layer.width == 6 for layer in result.layers)
    assert all("stroke-width:6;" in p.get("style") for p in root.iter("{http://www.w3.org/2000/svg}path"))


def test_a_mask_file_keeps_strokes_on_the_object(out_dir):
    svg = out_dir / "b.svg"
    mask_file = BALLERINA_MASK
    assert sketch(BALLERINA, svg, "--mask", mask_file, "--strokes", "16", "--iterations", "1") == 0
    result, _ = read(svg)
    mask = np.asarray(Image.open(mask_file).convert("L")) > 127
    for x, y in result.layers[0].points[:, 0]:
        c, r = int(x), int(y)
        assert mask[max(r - 6, 0) : r + 7, max(c - 6, 0) : c + 7].any(), "a start point in the background"


def test_a_mask_of_another_size_is_resized_with_a_note(tmp_path, out_dir, capsys):
    small = tmp_path / "mask_small.png"
    Image.open(FIELD_MASK).resize((160, 100), Image.NEAREST).save(small)
    svg = out_dir / "field.svg"
    assert sketch(FIELD, svg, "--mask", small, quiet=False) == 0
    err = capsys.readouterr().err
    assert "note: mask 160x100 resized to 320x240" in err
    assert f"wrote {svg}" in err
    assert read(svg)[0].width == 320


def test_preview_writes_a_png_of_every_level(out_dir):
    svg, png = out_dir / "h.svg", out_dir / "h.png"
    assert sketch(BIRD, svg, "--preview", png, "--strokes", "4,2,1") == 0
    with Image.open(png) as im:
        assert im.format == "PNG"
        assert im.size == (3 * 384, 384 + 20)  # three 384 px panels and a label strip
        pixels = np.asarray(im.convert("L"))
    assert pixels.min() < 128, "strokes are drawn"
    assert sorted(os.listdir(out_dir)) == ["h.png", "h.svg"]


def test_tiny_random_models_warn_that_the_sketch_is_meaningless(out_dir):
    with pytest.warns(UserWarning, match="meaningless"):
        assert sketch(ANIMAL, out_dir / "h.svg") == 0


def test_run_sketch_maps_canvas_strokes_exactly_onto_the_photo(runtime):
    from bridge.params import ClipassoParams
    from engine.jobs import SketchRequest, run_sketch

    buffer = io.BytesIO()
    Image.open(VASE).crop((0, 50, 240, 200)).save(buffer, "PNG")
    params = ClipassoParams(strokes=(6, 3), seeds=(0,), iterations=2, aug_bank=4)
    events = []
    result = run_sketch(runtime, SketchRequest(image=buffer.getvalue(), params=params, color="#ff0000"), events.append)
    assert events[0].stage == "load" and any(e.stage == "optimise" for e in events)
    assert (result.sketch.width, result.sketch.height) == (240, 150)
    assert result.canvas_map.scale == pytest.approx(240 / 224)
    for layer, level in zip(result.sketch.layers, result.levels):
        expected = level.points.double().numpy() * (240 / 224) - [0, 45]  # padded 45 px on top
        np.testing.assert_allclose(layer.points, expected, atol=1e-9)
        assert layer.width == pytest.approx(3 * 240 / 224) and layer.color == "#ff0000"
    assert result.notes == []


# --- a real process -------------------------------------------------------------------------------


def cli_process(*args, cwd, home, memory_limit: int | None = None):
    """`sketch ARGS` as a process; with `memory_limit` (bytes) its address space is capped, so that a
    test of a memory bound can never take the machine's memory, whatever the code does."""
    env = dict(os.environ, **{OFFLINE_ENV: "1", "HOME": str(home), "XDG_CACHE_HOME": str(home / "cache")})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    return subprocess.run(
        [sys.executable, "-m", "engine", "sketch", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=cap if memory_limit else None,
    )


def test_the_command_runs_as_a_process_and_writes_next_to_the_cwd(tmp_path, isolated_home):
    work = tmp_path / "work"
    work.mkdir()
    done = cli_process(BIRD, *FAST, "--strokes", "6,3", cwd=work, home=isolated_home)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "", "everything goes to stderr, stdout stays clean"
    assert "meaningless" in done.stderr
    assert "wrote bird.svg" in done.stderr
    result = svg_to_sketch((work / "bird.svg").read_bytes())
    assert (result.width, result.height) == (300, 300)
    assert [len(layer.points) for layer in result.layers] == [6, 3]
    assert os.listdir(work) == ["bird.svg"]


def test_the_process_exit_code_reports_bad_input(tmp_path, isolated_home):
    done = cli_process(tmp_path / "missing.png", "-o", tmp_path / "x.svg", *FAST, cwd=tmp_path, home=isolated_home)
    assert done.returncode == 2
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [
        f"error: image file not found: {tmp_path / 'missing.png'}"
    ]
    assert not (tmp_path / "x.svg").exists()


def test_a_1_by_100000_png_is_refused_with_exit_2(tmp_path, isolated_home):
    """3.5 KB that once asked for a 10^10-pixel square; run under a 6 GiB address-space cap."""
    line = tmp_path / "line.png"
    Image.new("RGB", (1, 100_000)).save(line)
    done = cli_process(line, "-o", tmp_path / "x.svg", *FAST, cwd=tmp_path, home=isolated_home, memory_limit=6 * 2**30)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "1 x 100000 pixels" in error[0] and "at most 20:1" in error[0], done.stderr
    assert not (tmp_path / "x.svg").exists()


def test_a_job_that_cannot_fit_in_memory_is_refused_with_exit_4(tmp_path, isolated_home):
    """Valid options, 256 sketches: refused before anything is allocated (under a 6 GiB address-space cap)."""
    strokes = ",".join(map(str, range(1024, 903, -8)))
    done = cli_process(
        ANIMAL,
        "-o",
        tmp_path / "x.svg",
        *FAST,
        "--strokes",
        strokes,
        "--seeds",
        "16",
        cwd=tmp_path,
        home=isolated_home,
        memory_limit=6 * 2**30,
    )
    assert done.returncode == 4, done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith(("error:", "  fix:"))]
    assert len(error) == 2 and "256 sketches" in error[0] and "GiB of memory on cpu" in error[0], done.stderr
    assert "fewer seeds or levels" in error[1] and not (tmp_path / "x.svg").exists()


# --- refusing bad input ---------------------------------------------------------------------------


def png_claiming(width: int, height: int) -> bytes:
    """A small valid PNG whose header claims width x height (a decompression bomb's header)."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def truncated_png() -> bytes:
    buffer = io.BytesIO()
    Image.open(VASE).save(buffer, "PNG")
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


BAD_IMAGES = {
    "text": (b"this is not an image\n", "not an image"),
    "eps": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n{ } loop\n", "not an image"),
    "truncated": (truncated_png(), "truncated or corrupt"),
    "empty": (b"", "empty"),
    "bomb": (png_claiming(30000, 30000), "too large"),
}


def assert_refused(code, capsys, out_dir, *words, exit_code=2):
    """Exit code, then exactly: one "error:" line naming the problem and one "  fix:" line."""
    err = capsys.readouterr().err
    assert code == exit_code, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("  fix: "), err
    for word in words:
        assert word in lines[0]
    if out_dir is not None:
        assert os.listdir(out_dir) == [], "no output or temp file"
    return lines


@pytest.mark.parametrize("kind", BAD_IMAGES)
def test_bad_images_are_refused(tmp_path, out_dir, capsys, kind):
    data, words = BAD_IMAGES[kind]
    image = tmp_path / "x.png"
    image.write_bytes(data)
    assert_refused(sketch(image, out_dir / "x.svg"), capsys, out_dir, words, str(image))


def test_a_fifo_as_the_photo_is_refused_without_waiting(tmp_path, out_dir, capsys):
    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    outcome = {}
    command = threading.Thread(target=lambda: outcome.setdefault("code", sketch(fifo, out_dir / "x.svg")), daemon=True)
    command.start()
    command.join(120)
    assert not command.is_alive(), "the command waits on the FIFO"
    assert_refused(outcome["code"], capsys, out_dir, "not a regular file")


def test_a_missing_image_is_refused(tmp_path, out_dir, capsys):
    assert_refused(sketch(tmp_path / "nope.png", out_dir / "x.svg"), capsys, out_dir, "not found")


@pytest.mark.parametrize(
    "option, value, words",
    [
        ("--strokes", "0", "stroke counts"),
        ("--strokes", "4,4", "repeat"),
        ("--strokes", "5000", "stroke counts"),
        ("--iterations", "0", "iterations"),
        ("--seeds", "0", "--seeds"),
        ("--width", "-1", "--width"),
        ("--width", "0", "--width"),
        ("--width", "999", "(--width) 999 px is too wide for this photo: at most 111 px"),  # in photo px
        ("--aug-bank", "-1", "bank"),
    ],
)
def test_bad_values_are_refused(out_dir, capsys, option, value, words):
    code = sketch(ANIMAL, out_dir / "x.svg", option, value)
    assert_refused(code, capsys, out_dir, words)


def test_one_seed_rule_gives_the_papers_seeds_and_every_variation_its_own():
    """bridge.seeds is the rule of `--seeds N` and of the extension's variations: `--seeds N` gives the
    paper's seeds (the methods' defaults), and no two variations of a photo's sketch share a seed."""
    assert job_seeds(len(ClipassoParams().seeds)) == ClipassoParams().seeds == (0, 1000, 2000)
    assert job_seeds(len(SceneParams().seeds)) == SceneParams().seeds
    variations = [job_seeds(16, variation) for variation in range(1, 65)]
    assert len({seed for seeds in variations for seed in seeds}) == 16 * 64
    assert job_seeds(2, 1) == (0, 1000) != job_seeds(2, 2)
    with pytest.raises(InputError, match="--seeds must be at least 1, got 0"):
        job_seeds(0)


@pytest.mark.skipif(diffvg.available(), reason="pydiffvg is installed here")
def test_the_diffvg_renderer_without_pydiffvg_is_refused(out_dir, capsys):
    code = sketch(ANIMAL, out_dir / "x.svg", "--renderer", "diffvg")
    lines = assert_refused(code, capsys, out_dir, "diffvg", "pydiffvg is not installed")
    assert "--renderer ours" in lines[1]


def test_a_mask_without_object_pixels_is_refused(tmp_path, out_dir, capsys):
    black = tmp_path / "black.png"
    Image.new("L", (320, 240), 0).save(black)
    code = sketch(FIELD, out_dir / "x.svg", "--mask", black)
    assert_refused(code, capsys, out_dir, "no object pixels")


def test_an_output_folder_that_does_not_exist_is_refused(tmp_path, capsys):
    missing = tmp_path / "no" / "such"
    code = sketch(ANIMAL, missing / "x.svg")
    assert_refused(code, capsys, None, "does not exist", str(missing))
    assert not (tmp_path / "no").exists(), "no folder is created"


def test_an_output_path_that_is_a_folder_is_refused_up_front(out_dir, capsys):
    code = sketch(ANIMAL, out_dir)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert os.listdir(out_dir) == []


def test_a_preview_path_in_an_unusable_folder_is_refused_up_front(tmp_path, out_dir, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    code = sketch(ANIMAL, out_dir / "x.svg", "--preview", blocker / "p.png")
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert os.listdir(out_dir) == []


@pytest.mark.parametrize(
    "outputs, words",
    [
        ({"-o": "photo.png"}, ["-o", "is the input image"]),
        ({"-o": "link.svg"}, ["-o", "is the input image"]),  # a symlink to the photo
        ({"--preview": "photo.png"}, ["--preview", "is the input image"]),
        ({"-o": "mask.png"}, ["-o", "is the input mask"]),
        ({"-o": "same.png", "--preview": "same.png"}, ["-o and --preview are the same file"]),
        ({"-o": "fifo.svg"}, ["not a regular file"]),
    ],
    ids=["o-is-photo", "o-links-to-photo", "preview-is-photo", "o-is-mask", "o-is-preview", "o-is-fifo"],
)
def test_an_output_that_would_replace_an_input_or_the_other_output_is_refused(tmp_path, capsys, outputs, words):
    photo, mask = tmp_path / "photo.png", tmp_path / "mask.png"
    photo.write_bytes(ANIMAL.read_bytes())
    Image.new("L", (248, 248), 255).save(mask)
    (tmp_path / "link.svg").symlink_to(photo)
    os.mkfifo(tmp_path / "fifo.svg")
    before = {p.name: p.read_bytes() for p in (photo, mask)}
    argv = ["sketch", "photo.png", "--mask", "mask.png", *FAST, "-q"]
    for option, name in outputs.items():
        argv += [option, name]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code = main(argv)
    finally:
        os.chdir(cwd)
    lines = assert_refused(code, capsys, None, *words)
    assert "another file name" in lines[1] or "own name" in lines[1] or "file name" in lines[1]
    assert {p.name: p.read_bytes() for p in (photo, mask)} == before
    assert (tmp_path / "link.svg").is_symlink() and stat.S_ISFIFO((tmp_path / "fifo.svg").stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.svg", "link.svg", "mask.png", "photo.png"]


def test_an_output_that_is_a_symlink_is_replaced_not_followed(tmp_path, out_dir):
    """A link planted at the output name (in a shared folder, by another user) must not redirect
    the write to its target (issue 22: `out.svg -> ~victim/.ssh/authorized_keys`)."""
    target = tmp_path / "elsewhere" / "sketch.svg"
    target.parent.mkdir()
    target.write_text("old")
    link = out_dir / "link.svg"
    link.symlink_to(target)
    assert sketch(ANIMAL, link) == 0
    assert not link.is_symlink() and read(link)[0].layers  # the sketch replaced the link ...
    assert target.read_text() == "old"  # ... and the link's target is untouched
    assert sorted(os.listdir(target.parent)) == ["sketch.svg"]  # no temp file left


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_gpu_is_a_device_error(out_dir, capsys):
    code = sketch(ANIMAL, out_dir / "x.svg", "--device", "cuda")
    assert_refused(code, capsys, out_dir, "CUDA", exit_code=4)


@pytest.mark.parametrize(
    "argv",
    [
        ["--device", "tpu"],
        ["--control-points", "5"],
        ["--strokes", "four"],
        ["--models", "huge"],
    ],
)
def test_options_outside_their_choices_are_usage_errors(out_dir, capsys, argv):
    with pytest.raises(SystemExit) as info:
        sketch(ANIMAL, out_dir / "x.svg", *argv)
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err
    assert os.listdir(out_dir) == []


def test_missing_weights_name_the_file_and_the_way_out(tmp_path, out_dir, capsys, isolated_home):
    empty = tmp_path / "weights"
    empty.mkdir()
    code = main(
        [
            "sketch",
            str(ANIMAL),
            "-o",
            str(out_dir / "x.svg"),
            "--models",
            "openai",
            "--weights-dir",
            str(empty),
            "--device",
            "cpu",
            "--strokes",
            "2",
            "--seeds",
            "1",
            "--iterations",
            "1",
            "-q",
        ]
    )
    error, fix = assert_refused(code, capsys, out_dir, exit_code=3)
    assert "ViT-B-32.pt" in error or "RN101.pt" in error
    assert str(empty) in error and "--weights-dir" in fix


def test_no_converge_runs_every_iteration_where_the_papers_rule_stops_early(out_dir, capsys):
    """The tiny test model's loss settles within a few evaluations: the paper's stop rule ends the
    level there; --no-converge (the extension's Custom switch) runs the whole cap."""
    ran = {}
    for rule in ("--converge", "--no-converge"):
        assert sketch(ANIMAL, out_dir / "c.svg", "--strokes", "4", "--iterations", "60", rule, quiet=False) == 0
        said = capsys.readouterr().err
        ran[rule] = int(said.split("wrote")[-1].split("(")[1].split(" iterations")[0])
    assert ran["--converge"] < 60 and ran["--no-converge"] == 60, ran
