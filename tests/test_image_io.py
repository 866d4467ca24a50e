"""Reading photos and masks: every supported format, colour conversion, and an actionable error for
each way a file can be bad."""

from __future__ import annotations

import io
import os
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bridge.errors import InputError
from engine.io.image import MAX_PIXELS, load_image, load_mask
from tests.harness.paths import BALLERINA_MASK

RED, BLUE = (255, 0, 0), (0, 0, 255)


def two_colour(size=(32, 24)) -> Image.Image:
    """Left half red, right half blue."""
    im = Image.new("RGB", size, RED)
    im.paste(BLUE, (size[0] // 2, 0, size[0], size[1]))
    return im


def encode(im: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def png_claiming(width: int, height: int) -> bytes:
    """A small valid PNG whose IHDR is patched to claim width x height (CRC fixed)."""
    data = bytearray(encode(Image.new("RGB", (4, 4)), "PNG"))
    # 8-byte signature, IHDR length (4), type at 12, width and height at 16..24, CRC at 29.
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def input_error(source, loader=load_image, *args) -> InputError:
    with pytest.raises(InputError) as info:
        loader(source, *args)
    err = info.value
    assert err.exit_code == 2 and err.hint
    assert "\n" not in err.message  # one line in a terminal or a dialog
    return err


# --- formats -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt, params, tolerance",
    [
        ("PNG", {}, 0),
        ("JPEG", {"quality": 95}, 40),
        ("WEBP", {"lossless": True}, 0),
        ("TIFF", {}, 0),
        ("BMP", {}, 0),
        ("GIF", {}, 0),
    ],
)
def test_every_format_loads_as_rgb_from_path_and_bytes(tmp_path, fmt, params, tolerance):
    data = encode(two_colour(), fmt, **params)
    for source in (write(tmp_path / f"photo.{fmt.lower()}", data), data):
        im = load_image(source)
        assert im.mode == "RGB" and im.size == (32, 24)
        pixels = np.asarray(im).astype(int)
        assert np.abs(pixels[12, 4] - RED).max() <= tolerance
        assert np.abs(pixels[12, 28] - BLUE).max() <= tolerance


def test_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), BLUE)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert tuple(np.asarray(load_image(path))[0, 0]) == RED


def test_file_is_fully_read_and_released(tmp_path):
    path = write(tmp_path / "photo.png", encode(two_colour(), "PNG"))
    im = load_image(path)
    path.unlink()
    assert tuple(np.asarray(im)[0, 0]) == RED


def test_exif_orientation_is_not_applied(tmp_path):
    """The sketch overlays the pixels as stored, so a 'rotate 90' tag must not rotate them."""
    exif = Image.Exif()
    exif[0x0112] = 6
    path = write(tmp_path / "rotated.jpg", encode(two_colour((40, 20)), "JPEG", exif=exif))
    assert load_image(path).size == (40, 20)


# --- transparency ------------------------------------------------------------------------------


def test_rgba_is_composited_on_white():
    rgba = Image.new("RGBA", (3, 1), (0, 0, 0, 0))  # fully transparent black
    rgba.putpixel((1, 0), (10, 20, 30, 255))  # opaque
    rgba.putpixel((2, 0), (0, 0, 0, 128))  # half-transparent black
    pixels = np.asarray(load_image(encode(rgba, "PNG"))).astype(int)
    assert pixels[0, 0].tolist() == [255, 255, 255]
    assert pixels[0, 1].tolist() == [10, 20, 30]
    assert np.all(np.abs(pixels[0, 2] - 127) <= 1)


def test_gray_with_alpha_is_composited_on_white():
    la = Image.new("LA", (2, 1), (0, 0))
    la.putpixel((1, 0), (0, 255))
    assert np.asarray(load_image(encode(la, "PNG")))[0].tolist() == [[255] * 3, [0] * 3]


def test_palette_transparency_becomes_white():
    pal = Image.new("P", (2, 1), 0)
    pal.putpalette([0, 0, 0, 200, 0, 0])
    pal.putpixel((1, 0), 1)
    data = encode(pal, "PNG", transparency=0)
    assert np.asarray(load_image(data))[0].tolist() == [[255] * 3, [200, 0, 0]]
    gif = encode(pal, "GIF", transparency=0)
    assert np.asarray(load_image(gif))[0].tolist() == [[255] * 3, [200, 0, 0]]


def test_rgb_transparency_key_becomes_white():
    """A PNG tRNS colour key on an RGB image (the 'transparency' info, no alpha channel)."""
    im = Image.new("RGB", (2, 1), (0, 255, 0))
    im.putpixel((1, 0), (5, 5, 5))
    data = encode(im, "PNG", transparency=(0, 255, 0))
    assert np.asarray(load_image(data))[0].tolist() == [[255] * 3, [5, 5, 5]]


# --- other colour modes ------------------------------------------------------------------------


def gradient16() -> np.ndarray:
    return np.linspace(0, 65535, 256).round().astype(np.uint16)[None].repeat(16, axis=0)  # (16, 256)


def test_16bit_grayscale_png_keeps_its_range():
    data = encode(Image.fromarray(gradient16()), "PNG")
    gray = np.asarray(load_image(data))[..., 0].astype(int)  # (16, 256)
    assert gray.min() == 0 and gray.max() == 255
    assert abs(gray[0, 128] - 128) <= 1  # mid-gray stays mid-gray, not clipped to white
    assert np.all(np.diff(gray[0]) >= 0)


@pytest.mark.parametrize("mode", ["I;16B", "I"])
def test_16bit_tiff_variants_keep_their_range(mode):
    values = gradient16()
    if mode == "I;16B":
        im = Image.frombytes("I;16B", (256, 16), values.astype(">u2").tobytes())
    else:
        im = Image.fromarray(values.astype(np.int32))
    loaded = Image.open(io.BytesIO(encode(im, "TIFF")))
    assert loaded.mode == mode
    gray = np.asarray(load_image(encode(im, "TIFF")))[..., 0].astype(int)
    assert gray.min() == 0 and gray.max() == 255 and abs(gray[0, 128] - 128) <= 1


def test_float_tiff_in_unit_range_is_scaled():
    values = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    gray = np.asarray(load_image(encode(Image.fromarray(values), "TIFF")))[..., 0]
    assert gray.min() == 0 and gray.max() == 255


def test_float_tiff_outside_unit_range_is_stretched():
    values = np.linspace(-50, 3000, 64, dtype=np.float32).reshape(8, 8)
    gray = np.asarray(load_image(encode(Image.fromarray(values), "TIFF")))[..., 0]
    assert gray.min() == 0 and gray.max() == 255


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_converts_to_rgb(fmt):
    cmyk = Image.new("CMYK", (4, 4), (0, 0, 0, 0))  # no ink: white paper
    cmyk.putpixel((1, 1), (0, 0, 0, 255))  # full black ink
    pixels = np.asarray(load_image(encode(cmyk, fmt))).astype(int)
    assert pixels.shape == (4, 4, 3)
    assert pixels[3, 3].min() >= 230 and pixels[1, 1].max() <= 60


def test_grayscale_and_bilevel_become_rgb():
    for mode, white in (("L", 255), ("1", 1)):
        im = load_image(encode(Image.new(mode, (3, 2), white), "PNG"))
        assert im.mode == "RGB" and np.asarray(im).min() == 255


# --- errors --------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.png"
    err = input_error(path)
    assert str(path) in err.message and "not found" in err.message


def test_folder(tmp_path):
    err = input_error(tmp_path)
    assert str(tmp_path) in err.message and "folder" in err.message


def test_empty_file_and_empty_bytes(tmp_path):
    path = write(tmp_path / "empty.png", b"")
    err = input_error(path)
    assert str(path) in err.message and "empty" in err.message
    assert "image data" in input_error(b"").message


def test_not_an_image(tmp_path):
    path = write(tmp_path / "notes.png", b"these are my notes, not a picture\n" * 10)
    err = input_error(path)
    assert str(path) in err.message and "not an image" in err.message
    assert "PNG" in err.hint
    assert "image data" in input_error(b"GIF89a but not really").message


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(tmp_path, fmt):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), fmt)
    path = write(tmp_path / f"cut.{fmt.lower()}", data[: len(data) // 2])
    err = input_error(path)
    assert str(path) in err.message and "truncated or corrupt" in err.message


def test_corrupt_png_data(tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = bytearray(encode(Image.fromarray(noise), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 4 : idat + 4 + 200] = bytes(200)  # zero the start of the deflate stream
    err = input_error(write(tmp_path / "broken.png", bytes(data)))
    assert "truncated or corrupt" in err.message


@pytest.mark.parametrize(
    "width, height",
    [
        (9_000, 9_000),  # over MAX_PIXELS, under PIL's own limit: our header check
        (9_500, 9_500),  # over PIL's warning limit
        (100_000, 100_000),  # over PIL's error limit
    ],
)
def test_decompression_bomb_is_refused_from_the_header(tmp_path, recwarn, width, height):
    assert width * height > MAX_PIXELS
    path = write(tmp_path / "bomb.png", png_claiming(width, height))
    start = time.perf_counter()
    err = input_error(path)
    # Decoding (or even allocating) 81+ MP would take far longer; a header check is instant.
    assert time.perf_counter() - start < 0.5
    assert str(path) in err.message and "too large" in err.message
    assert "truncated" not in err.message  # refused before any decoding was attempted
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_bomb_message_gives_the_size(tmp_path):
    err = input_error(write(tmp_path / "bomb.png", png_claiming(9_000, 9_000)))
    assert "9000 x 9000" in err.message and f"{MAX_PIXELS:,}" in err.message


def test_largest_allowed_size_is_not_refused_by_the_header(tmp_path):
    """8000 x 8000 is exactly MAX_PIXELS: the header passes, the (fake) data then fails."""
    err = input_error(write(tmp_path / "big.png", png_claiming(8_000, 8_000)))
    assert "truncated or corrupt" in err.message


def test_zero_size_png_is_refused(tmp_path):
    path = write(tmp_path / "zero.png", png_claiming(0, 4))
    assert str(path) in input_error(path).message


def test_zero_size_from_a_decoder_is_refused(tmp_path, monkeypatch):
    """PIL's own readers reject most zero-size headers; the check covers any that do not."""
    monkeypatch.setattr(Image, "open", lambda fp, **_: Image.new("RGB", (0, 5)))
    path = write(tmp_path / "zero.png", b"whatever")
    err = input_error(path)
    assert str(path) in err.message and "zero size" in err.message


def test_an_elongated_image_is_refused_from_its_header(tmp_path, monkeypatch):
    """1 x 100000 is only 0.1 MP, but padding it to a square for the canvas would need 10^10 pixels."""
    path = tmp_path / "line.png"
    Image.new("RGB", (1, 100_000)).save(path)
    assert path.stat().st_size < 4096  # a small file, a large square
    monkeypatch.setattr(Image.Image, "load", lambda im: pytest.fail("pixels decoded before the size check"))
    err = input_error(path)
    assert "1 x 100000" in err.message and "20:1" in err.message and "crop" in err.hint


def test_a_long_side_over_the_limit_is_refused_though_the_pixel_count_fits(tmp_path):
    """12000 x 4000 is 48 MP, under MAX_PIXELS, but its padded square would be 144 MP."""
    assert MAX_PIXELS > 12_000 * 4_000
    err = input_error(write(tmp_path / "wide.png", png_claiming(12_000, 4_000)))
    assert "long side of 12,000 pixels" in err.message and "10,000" in err.message and "downscale" in err.hint


def test_other_formats_never_reach_their_readers(tmp_path, monkeypatch):
    """An EPS would be handed to Ghostscript, which runs whatever it says (`{ } loop` spins forever)."""
    from PIL import EpsImagePlugin

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda im: pytest.fail("the EPS reader was used"))
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n{ } loop\n"
    err = input_error(write(tmp_path / "loop.eps", eps))
    assert "not an image in a supported format" in err.message and "PNG" in err.hint


def png_with_chunk(kind: bytes, data: bytes) -> bytes:
    """A valid 64 x 64 PNG with one more chunk after its header."""
    png = encode(Image.new("RGB", (64, 64)), "PNG")
    chunk = struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return png[:33] + chunk + png[33:]


@pytest.mark.parametrize(
    "data",
    [
        png_with_chunk(b"zTXt", b"k\0\0" + zlib.compress(b"a" * 50 * 2**20, 9)),  # 50 MB of text in 50 KB
        png_with_chunk(b"iCCP", b"p\0\0" + zlib.compress(b"a" * 50 * 2**20, 9)),
        encode(Image.new("RGB", (64, 64)), "WEBP")[:30],
    ],
    ids=["zTXt-bomb", "iCCP-bomb", "truncated-webp"],
)
def test_headers_that_break_their_reader_are_bad_input(data):
    err = input_error(data)
    assert "damaged" in err.message and "re-export" in err.hint


def test_a_fifo_or_a_device_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    outcome = {}

    def load(source):
        try:
            load_image(source)
        except InputError as err:
            outcome[str(source)] = err.message

    for source in (fifo, Path("/dev/zero")):
        reader = threading.Thread(target=load, args=(source,), daemon=True)
        reader.start()
        reader.join(10)
        assert not reader.is_alive(), f"load_image({source}) hangs"
        assert "not a regular file" in outcome[str(source)]


# --- masks ---------------------------------------------------------------------------------------


def square_mask(size=(20, 10)) -> np.ndarray:
    mask = np.zeros(size[::-1], dtype=np.uint8)  # (h, w)
    mask[2:8, 5:15] = 255
    return mask


def test_mask_at_photo_size():
    mask, note = load_mask(encode(Image.fromarray(square_mask()), "PNG"), (20, 10))
    assert note is None
    assert mask.dtype == bool and mask.shape == (10, 20)
    assert mask.sum() == 60 and mask[2:8, 5:15].all()


def test_mask_is_resized_with_a_note(tmp_path):
    path = write(tmp_path / "mask.png", encode(Image.fromarray(square_mask()), "PNG"))
    mask, note = load_mask(path, (40, 20))
    assert note == "mask 20x10 resized to 40x20 to fit the image"
    assert mask.shape == (20, 40) and mask.sum() == 4 * 60  # nearest: still binary, same area
    assert mask[4:16, 10:30].all()


def test_shared_mask_note_text():
    mask, note = load_mask(BALLERINA_MASK, (250, 250))
    assert note == "mask 500x500 resized to 250x250 to fit the image" and mask.any()


def test_mask_with_alpha_uses_the_alpha():
    """A cut-out: black everywhere, opaque on the object, transparent around it."""
    rgba = np.zeros((10, 20, 4), dtype=np.uint8)
    rgba[..., 3] = square_mask()
    mask, _ = load_mask(encode(Image.fromarray(rgba), "PNG"), (20, 10))
    assert mask.sum() == 60 and mask[2:8, 5:15].all()


def test_opaque_rgba_mask_uses_luminance():
    rgba = np.full((10, 20, 4), 255, dtype=np.uint8)
    rgba[..., :3] = square_mask()[..., None]
    mask, _ = load_mask(encode(Image.fromarray(rgba), "PNG"), (20, 10))
    assert mask.sum() == 60


def test_rgb_mask_threshold_is_luminance_127():
    gray = np.array([[127, 128, 0, 255]], dtype=np.uint8)
    mask, _ = load_mask(encode(Image.fromarray(np.stack([gray] * 3, axis=-1)), "PNG"), (4, 1))
    assert mask.tolist() == [[False, True, False, True]]


def test_empty_mask_is_an_error(tmp_path):
    path = write(tmp_path / "blank.png", encode(Image.new("L", (20, 10), 0), "PNG"))
    err = input_error(path, load_mask, (20, 10))
    assert str(path) in err.message and "marks no object pixels" in err.message
    assert "--mask none" in err.hint


def test_mask_file_errors_name_the_mask(tmp_path):
    err = input_error(tmp_path / "gone.png", load_mask, (20, 10))
    assert err.message.startswith("mask file not found")
    assert "mask data" in input_error(b"", load_mask, (20, 10)).message
