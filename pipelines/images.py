"""Open untrusted image files safely, as RGB, and measure what the dataset filters look at.

Every refusal is an :class:`ImageProblem` whose message is one sentence naming the file, so a preparation
run can report it and go on with the other files.
"""
from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

# Larger than any camera or scan a dataset needs (a 100 MP medium-format frame is 11656 x 8742), far below
# what it takes to exhaust memory (RGB at 100 MP is 300 MB decoded).
DEFAULT_MAX_PIXELS = 100_000_000
ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
SHARPNESS_SIDE = 512  # larger images are measured at this shorter side (training resolution); smaller ones as they are
EDGE_STEP = 20  # levels (0-255) a 3x3 neighbourhood must span in some channel to count as an edge
MIN_EDGES = 0.001  # fraction of edge pixels below which an image has no edges to judge: it scores 0


class ImageProblem(ValueError):
    """A file cannot be used as an image; the message names it and says why."""


@dataclass(frozen=True)
class Opened:
    """A decoded image as RGB, with what was done to get there."""
    image: Image.Image
    format: str  # Pillow's format name of the file, e.g. "JPEG"
    mode: str  # the file's own colour mode, before conversion
    rotated: bool  # an EXIF orientation was applied

    @property
    def untouched(self) -> bool:
        """The RGB pixels are exactly the file's own, so the file can be copied instead of re-encoded."""
        return self.mode == "RGB" and not self.rotated


def open_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Opened:
    """Decode ``path`` as RGB with EXIF orientation applied; refuse empty, foreign, huge or broken files."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageProblem(f"{path.name} is empty (0 bytes).")
    except OSError as err:
        raise ImageProblem(f"{path.name} cannot be read ({err.strerror}).") from None
    with warnings.catch_warnings():
        # We apply our own pixel limit below; Pillow's warning would only repeat it.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:  # reads the header only
                _check_pixels(path, im.size, max_pixels)
                im.load()
                fmt, mode = im.format or "?", im.mode
                image, rotated = _exif_upright(path, im)
                return Opened(to_rgb(image, path.name), fmt, mode, rotated)
        except ImageProblem:
            raise
        except Image.DecompressionBombError:
            raise ImageProblem(f"{path.name} has more pixels than Pillow will ever decode; refused as a "
                               "possible decompression bomb.") from None
        except UnidentifiedImageError:
            raise ImageProblem(f"{path.name} is not an image (its content is not a format Pillow reads, "
                               "whatever its extension says).") from None
        except Exception as err:  # decoders raise OSError, SyntaxError, ValueError, EOFError, zlib.error ...
            raise ImageProblem(f"{path.name} is truncated or corrupt ({_first_line(err)}).") from None


def _check_pixels(path: Path, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        # no limit in the sentence: the Datasets form has no field for it, and no photo comes near it
        raise ImageProblem(f"{path.name} is {width}x{height} = {width * height:,} pixels, too many to decode "
                           "safely; refused before decoding (a possible decompression bomb).")
    if width == 0 or height == 0:
        raise ImageProblem(f"{path.name} has no pixels ({width}x{height}).")


def _exif_upright(path: Path, im: Image.Image) -> tuple[Image.Image, bool]:
    """The image turned the way the camera's EXIF orientation says; a broken EXIF block is ignored."""
    try:
        orientation = im.getexif().get(0x0112, 1)
        return (ImageOps.exif_transpose(im), True) if orientation not in (1, None) else (im, False)
    except Exception as err:  # a damaged EXIF block should not cost the picture
        log.warning("%s: ignoring unreadable EXIF data (%s)", path.name, _first_line(err))
        return im, False


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def user_image(image: Image.Image | str | Path | None, name: str, max_pixels: int,
               error: type[ValueError] = ImageProblem) -> Image.Image:
    """An uploaded PIL image or file path as RGB; a missing, broken or huge image raises ``error`` in one sentence.

    ``name``: what the form calls the image ("content", "portrait"), for the message.
    """
    if image is None:
        raise error(f"Give a {name} image.")
    if isinstance(image, (str, Path)):
        try:
            return open_image(image, max_pixels=max_pixels).image
        except ImageProblem as err:
            raise error(f"The {name} image: {str(err).rstrip('.')}; upload a PNG or JPEG photo instead.") from None
    if not isinstance(image, Image.Image):
        raise error(f"The {name} image must be a PIL image or a file path, not {type(image).__name__}.")
    if image.width * image.height > max_pixels:
        raise error(f"The {name} image is {image.width}x{image.height} pixels, more than the limit of "
                    f"{max_pixels:,}; downscale it first.")
    return to_rgb(image, name)  # grayscale, palette and RGBA uploads are converted, alpha onto white


def to_rgb(image: Image.Image, name: str = "image") -> Image.Image:
    """8-bit RGB: alpha composited on white, 16-bit scaled (not clipped), CMYK through its ICC profile."""
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode in ALPHA_MODES or "transparency" in image.info:
        return _on_white(image.convert("RGBA"))
    if mode in SIXTEEN_BIT_MODES or mode in ("I", "F"):
        return _scaled_gray(image).convert("RGB")
    if mode == "CMYK":
        return _cmyk_to_rgb(image, name)
    try:
        return image.convert("RGB")  # 1, L, P, YCbCr, HSV
    except ValueError:
        raise ImageProblem(f"{name} uses colour mode {mode}, which cannot be converted to RGB.") from None


def _on_white(rgba: Image.Image) -> Image.Image:
    # Transparent pixels keep arbitrary colours underneath; white is what viewers show and trainers expect.
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _scaled_gray(image: Image.Image) -> Image.Image:
    """16/32-bit or float grayscale as 8-bit L, scaled to its nominal range (Pillow's convert clips at 255)."""
    pixels = np.asarray(image, dtype=np.float64)
    top = float(pixels.max()) if pixels.size else 0.0
    if image.mode in SIXTEEN_BIT_MODES or 255 < top <= 65535:
        peak = 65535.0  # 16-bit data, also when PNG decoders hand it over as 32-bit "I"
    elif image.mode == "F" and top <= 1.0:
        peak = 1.0
    else:
        peak = max(top, 255.0)
    return Image.fromarray(np.clip(pixels * (255.0 / peak) + 0.5, 0, 255).astype(np.uint8), "L")


def _cmyk_to_rgb(image: Image.Image, name: str) -> Image.Image:
    """CMYK through the file's ICC profile when it has one (print profiles differ a lot), else Pillow's formula."""
    icc = image.info.get("icc_profile")
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError) as err:
            log.warning("%s: unusable ICC profile (%s); converting CMYK without it", name, _first_line(err))
    return image.convert("RGB")


def sharpness(image: Image.Image, side: int = SHARPNESS_SIDE) -> float:
    """Mean squared Laplacian on the image's edges (low = blurry), with the shorter side at most ``side``."""
    # Only edges count, so a flat drawing with a few hard outlines is as sharp as a busy photo, and each pixel
    # takes its strongest channel, so a green shape on grey (nearly the same brightness) still has an edge. An
    # image is never upscaled to be measured: upscaling blurs, and a small image is the "too small" check's job.
    import cv2  # here: the Datasets tab reads the defaults beside this function at page build

    if min(image.size) > side:
        image = shrink_to(image, side)
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    laplacian = np.abs(cv2.Laplacian(pixels, cv2.CV_32F)).max(axis=-1)
    kernel = np.ones((3, 3), np.uint8)
    edges = (cv2.dilate(pixels, kernel) - cv2.erode(pixels, kernel)).max(axis=-1) >= EDGE_STEP
    if edges.mean() < MIN_EDGES:
        return 0.0
    return float(np.mean(laplacian[edges] ** 2))


def aspect_ratio(size: tuple[int, int]) -> float:
    """Longer side over shorter side (1.0 = square)."""
    width, height = size
    return max(width, height) / max(1, min(width, height))


def fit_square(image: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is ``size`` and centre-crop to size x size."""
    return ImageOps.fit(image, (size, size), Image.Resampling.LANCZOS)


def centre_square(image: Image.Image) -> Image.Image:
    """The largest centred square, at the image's own resolution: the part a square crop trains on."""
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side))


def shrink_to(image: Image.Image, side: int) -> Image.Image:
    """Downscale so the shorter side is ``side``; smaller images are left alone (upscaling adds nothing)."""
    if min(image.size) <= side:
        return image
    scale = side / min(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
