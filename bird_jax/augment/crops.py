"""Host ops that set the image size: random-resized-crop, resize, and the eval centre crop.

Each takes and returns uint8 [H, W, 3]; one PIL resize of a (sub-pixel) box does crop and resize
together. `size` is injected from data.image_size by the registry when a pipeline omits it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from bird_jax.augment.registry import HOST, register

RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
_CROP_ATTEMPTS = 10

Box = tuple[float, float, float, float]  # left, top, right, bottom in pixels


def resampling(name: str) -> Image.Resampling:
    """The PIL filter called `name`; ValueError listing the choices."""
    if name not in RESAMPLING:
        raise ValueError(f"Unknown interpolation {name!r}; choose one of {sorted(RESAMPLING)}.")
    return RESAMPLING[name]


def resize_box(image: np.ndarray, box: Box, size: int, resample: int) -> np.ndarray:
    """Crops `box` (sub-pixel) out of `image` and resizes it to size x size in one PIL call."""
    return np.asarray(Image.fromarray(image).resize((size, size), resample, box=box))


def random_crop_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    rng: np.random.Generator,
) -> Box:
    """Inception-style crop: area fraction in `scale`, aspect (w/h) log-uniform in `ratio`.

    Tries a few samples; if none fits, takes the largest central crop with a valid aspect.
    """
    area = height * width * rng.uniform(*scale, size=_CROP_ATTEMPTS)
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]), size=_CROP_ATTEMPTS))
    crop_widths, crop_heights = np.sqrt(area * aspect), np.sqrt(area / aspect)
    fits = (crop_widths <= width) & (crop_heights <= height)
    if fits.any():
        first = int(np.argmax(fits))
        crop_width, crop_height = crop_widths[first], crop_heights[first]
        left = rng.uniform(0, width - crop_width)
        top = rng.uniform(0, height - crop_height)
        return left, top, left + crop_width, top + crop_height
    aspect = np.clip(width / height, *ratio)
    crop_width, crop_height = min(width, height * aspect), min(height, width / aspect)
    left, top = (width - crop_width) / 2, (height - crop_height) / 2
    return left, top, left + crop_width, top + crop_height


def center_crop_box(height: int, width: int, crop_pct: float) -> Box:
    """The central square that resizing the shorter side to size/crop_pct then cropping keeps."""
    side = min(height, width) * crop_pct
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


def _check_size(size: int) -> None:
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive integer, got {size!r}.")


@register(HOST)
def random_resized_crop(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    interpolation: str = "bilinear",
) -> np.ndarray:
    """Crops a random box (area fraction in `scale`, aspect in `ratio`) and resizes it to `size`."""
    _check_size(size)
    low, high = scale
    if not 0 < low <= high <= 1:
        raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {tuple(scale)}.")
    low, high = ratio
    if not 0 < low <= high:
        raise ValueError(f"ratio must satisfy 0 < low <= high, got {tuple(ratio)}.")
    height, width = image.shape[:2]
    box = random_crop_box(height, width, scale, ratio, rng)
    return resize_box(image, box, size, resampling(interpolation))


@register(HOST)
def resize(
    image: np.ndarray, rng: np.random.Generator, *, size: int, interpolation: str = "bilinear"
) -> np.ndarray:
    """Resizes the whole image to size x size (aspect not kept), as the bird study did."""
    del rng  # deterministic
    _check_size(size)
    height, width = image.shape[:2]
    return resize_box(image, (0, 0, width, height), size, resampling(interpolation))


@register(HOST)
def center_crop(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    size: int,
    crop_pct: float = 0.875,
    interpolation: str = "bilinear",
) -> np.ndarray:
    """Resizes the shorter side to size / crop_pct and keeps the central size x size square."""
    del rng  # deterministic
    _check_size(size)
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}.")
    height, width = image.shape[:2]
    box = center_crop_box(height, width, crop_pct)
    return resize_box(image, box, size, resampling(interpolation))
