"""Opening untrusted image files: every bad file gets one sentence naming it; every colour mode becomes RGB;
sharpness: hard-edged flat pictures are sharp, blurred ones are not."""
from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from matplotlib import cbook
from PIL import Image, ImageFilter

from pipelines import toy_world
from tests.prepare_images import blurry, bomb_png, exif_rotated, photo, save, truncated, with_text
from pipelines.images import (ImageProblem, aspect_ratio, fit_square, open_image, sharpness, shrink_to,
                                   to_rgb)
from training.prepare.checks import DEFAULT_MIN_SHARPNESS, DEFAULT_TEXT_THRESHOLD as DEFAULT_THRESHOLD
from training.prepare.text_regions import text_fraction


def refused(path, **kwargs) -> str:
    with pytest.raises(ImageProblem) as info:
        open_image(path, **kwargs)
    message = str(info.value)
    assert path.name in message and message.endswith(".") and "\n" not in message
    return message


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert "empty (0 bytes)" in refused(tmp_path / "empty.jpg")


def test_not_an_image_despite_its_extension(tmp_path):
    (tmp_path / "notes.png").write_text("shopping list: milk, eggs")
    assert "is not an image" in refused(tmp_path / "notes.png")


def test_truncated_jpeg(tmp_path):
    assert "truncated or corrupt" in refused(truncated(tmp_path / "cut.jpg"))


def test_pixel_bomb_is_refused_from_the_header_before_decoding(tmp_path):
    # 12000 x 10000 is over our 100 MP limit but under Pillow's own bomb limit, so our check is what refuses it;
    # the body is not valid image data, so a decode attempt would have said "corrupt" instead.
    message = refused(bomb_png(tmp_path / "big.png", 12_000, 10_000))
    assert "120,000,000 pixels" in message and "before decoding" in message
    assert "decompression bomb" in refused(bomb_png(tmp_path / "huge.png"))  # Pillow's hard limit
    save(photo(0, (64, 64)), tmp_path / "small.png")
    assert "too many to decode safely" in refused(tmp_path / "small.png", max_pixels=1000)


def test_cmyk_becomes_rgb(tmp_path):
    save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), tmp_path / "print.jpg", quality=95)
    opened = open_image(tmp_path / "print.jpg")
    assert opened.image.mode == "RGB" and opened.mode == "CMYK" and not opened.untouched
    r, g, b = opened.image.getpixel((8, 8))
    assert r > 230 and g < 30 and b < 30  # cyan 0, magenta+yellow full = red


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    levels = np.array([[0, 1000, 32768, 65535]], dtype=np.uint16).repeat(4, axis=0)
    save(Image.fromarray(levels), tmp_path / "scan.png")
    opened = open_image(tmp_path / "scan.png")
    assert opened.mode == "I;16"
    row = np.asarray(opened.image)[0, :, 0]
    assert row.tolist() == [0, 4, 128, 255]  # Pillow's own convert("RGB") gives [0, 255, 255, 255]


def test_palette_alpha_and_grayscale_modes(tmp_path):
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.putpixel((0, 0), 1)
    save(palette, tmp_path / "sticker.png", transparency=0)
    image = open_image(tmp_path / "sticker.png").image
    assert image.getpixel((0, 0)) == (255, 0, 0) and image.getpixel((4, 4)) == (255, 255, 255)  # not black

    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 128))
    image = open_image(save(rgba, tmp_path / "logo.png")).image
    assert image.getpixel((4, 4)) == (255, 255, 255)
    assert image.getpixel((0, 0))[0] == 255 and 120 <= image.getpixel((0, 0))[1] <= 135  # half red on white

    assert open_image(save(Image.new("LA", (8, 8), (100, 0)), tmp_path / "la.png")).image.getpixel((1, 1)) == \
        (255, 255, 255)
    gray = open_image(save(Image.new("L", (8, 8), 100), tmp_path / "gray.png"))
    assert gray.image.mode == "RGB" and gray.image.getpixel((1, 1)) == (100, 100, 100)


def test_float_and_32_bit_modes():
    assert to_rgb(Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32), "F")).getpixel((0, 0)) == (128,) * 3
    assert to_rgb(Image.fromarray(np.full((4, 4), 200, dtype=np.int32), "I")).getpixel((0, 0)) == (200,) * 3


def test_exif_orientation_is_applied(tmp_path):
    opened = open_image(exif_rotated(tmp_path / "phone.jpg"))
    assert opened.image.size == (200, 320) and opened.rotated and not opened.untouched
    plain = open_image(save(photo(1), tmp_path / "plain.jpg", quality=90))
    assert plain.untouched and plain.format == "JPEG"


def test_sharpness_aspect_and_sizes():
    assert sharpness(photo(0)) > DEFAULT_MIN_SHARPNESS > sharpness(blurry(0))
    assert aspect_ratio((300, 900)) == aspect_ratio((900, 300)) == 3.0
    assert fit_square(photo(0, (400, 300)), 128).size == (128, 128)
    assert shrink_to(photo(0, (400, 300)), 150).size == (200, 150)
    small = photo(0, (100, 80))
    assert shrink_to(small, 150) is small


def test_hard_edged_flat_pictures_are_sharp_and_blurred_ones_are_not():
    # The toy world: one flat shape on a plain ground, every colour pair (green on grey is nearly one brightness).
    rng = random.Random(4)
    scenes = [toy_world.random_scene(rng, *triple) for triple in toy_world.all_prompts()]
    flat = [toy_world.render(scene, size) for scene, size in zip(scenes, itertools.cycle((64, 128, 320, 512)))]
    scores = [sharpness(image) for image in flat]
    assert min(scores) >= 10 * DEFAULT_MIN_SHARPNESS, min(scores)
    blurred = [sharpness(image.resize((512, 512)).filter(ImageFilter.GaussianBlur(3))) for image in flat[::6]]
    assert max(blurred) < DEFAULT_MIN_SHARPNESS, max(blurred)
    hopper = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    assert sharpness(hopper) > 10 * DEFAULT_MIN_SHARPNESS > DEFAULT_MIN_SHARPNESS > sharpness(
        hopper.filter(ImageFilter.GaussianBlur(3)))


def test_text_regions_are_flagged_and_plain_pictures_are_not():
    rng = random.Random(3)
    scenes = [toy_world.render(toy_world.random_scene(rng), 512) for _ in range(12)]
    assert max(text_fraction(s) for s in scenes) < DEFAULT_THRESHOLD
    assert max(text_fraction(photo(i, (512, 384))) for i in range(4)) < DEFAULT_THRESHOLD
    captioned = [text_fraction(with_text(s)) for s in scenes[:6]]
    assert min(captioned) >= DEFAULT_THRESHOLD, captioned
