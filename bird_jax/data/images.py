"""Reading image files of any mode into RGB uint8 arrays."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")

# What PIL raises for files it cannot identify, parse or fully decode (truncated, corrupt, too big).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether `path` has one of the supported image extensions (case-insensitive)."""
    return os.fspath(path).lower().endswith(IMAGE_EXTENSIONS)


def check_image_header(path: str | os.PathLike) -> str | None:
    """Cheap validity check that reads only the header; returns the problem, or None if it looks ok.

    Catches empty, random and non-image files; files that fail only on full decode (e.g. a
    truncated JPEG) pass here and are caught by `load_image` in the input pipeline.
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
    except DECODE_ERRORS as error:
        return f"{type(error).__name__}: {error}"
    if width == 0 or height == 0:
        return f"empty image ({width}x{height})"
    return None


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Converts a PIL image of any mode (L, LA, RGBA, P, CMYK, I;16, ...) to HxWx3 uint8."""
    if image.mode == "I" or image.mode.startswith("I;16"):
        # 16-bit grayscale (e.g. PNG): PIL's own conversion clips to 255 instead of rescaling.
        high = np.asarray(image, dtype=np.float32)
        image = Image.fromarray(np.clip(high / 257.0, 0, 255).round().astype(np.uint8))
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def array_to_rgb(image: np.ndarray) -> np.ndarray:
    """HxW, HxWx1, HxWx3 or HxWx4 uint8 array -> HxWx3 uint8 (grey repeated, alpha dropped)."""
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"Expected an HxW[xC] image with C in (1, 3, 4), got {image.shape}.")
    if image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    return image[..., :3]


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Reads and fully decodes an image file into an HxWx3 uint8 array (EXIF rotation applied).

    Raises FileNotFoundError if it is missing, and ValueError naming the file if it is empty,
    truncated or not a readable image.
    """
    try:
        with Image.open(path) as image:
            ImageOps.exif_transpose(image, in_place=True)  # Also fully decodes.
            return to_rgb_array(image)
    except FileNotFoundError:
        raise
    except DECODE_ERRORS as error:
        raise ValueError(f"Cannot read image {os.fspath(path)!r}: {error}") from error
