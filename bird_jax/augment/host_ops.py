"""Per-image host ops of the bird study: flip, median blur, CLAHE, JPEG, posterize, edges.

Each has the host-op signature `op(image, rng, *, params) -> image` on uint8 [H, W, 3] RGB
(contiguous or not) and returns a contiguous uint8 [H, W, 3] of the same size. Bad params raise
ValueError naming the param and its range. The registry adds the application probability `p`.
"""

from __future__ import annotations

import cv2
import numpy as np

from bird_jax.augment.checks import IntOrRange, check_int, check_number, int_range
from bird_jax.augment.registry import HOST, register


def rgb_uint8(image: np.ndarray) -> np.ndarray:
    """The image as a contiguous uint8 [H, W, 3] array; ValueError for anything else."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"Expected a uint8 [H, W, 3] image, got {image.dtype} {image.shape}.")
    return np.ascontiguousarray(image)


@register(HOST, p=0.5)
def flip_lr(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirrors the image left-right (always; in a pipeline p defaults to 0.5)."""
    del rng  # deterministic
    return cv2.flip(rgb_uint8(image), 1)  # ~20x faster than a numpy reversed copy


@register(HOST)
def median_blur(
    image: np.ndarray, rng: np.random.Generator, *, ksize: IntOrRange = 3
) -> np.ndarray:
    """Median filter of odd size `ksize` >= 3, or of an odd size drawn from a (lo, hi) range."""
    low, high = int_range("ksize", ksize, 3, 255)
    if low % 2 == 0 or high % 2 == 0:
        raise ValueError(f"ksize must be odd (3, 5, 7, ...), got {ksize!r}.")
    size = low + 2 * int(rng.integers(0, (high - low) // 2 + 1)) if low < high else low
    return cv2.medianBlur(rgb_uint8(image), size)


@register(HOST)
def clahe(
    image: np.ndarray, rng: np.random.Generator, *, clip_limit: float = 2.0, tile_grid: int = 8
) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of the LAB lightness channel.

    clip_limit > 0 caps each tile's histogram; tile_grid (1..64) tiles per side.
    """
    del rng  # deterministic
    check_number("clip_limit", clip_limit, 0.0)
    if clip_limit == 0:
        raise ValueError("clip_limit must be > 0, got 0.")
    check_int("tile_grid", tile_grid, 1, 64)
    lab = cv2.cvtColor(rgb_uint8(image), cv2.COLOR_RGB2LAB)
    # A CLAHE object cannot be pickled and is not thread-safe; creating one costs ~5 us.
    equaliser = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(tile_grid, tile_grid))
    lab[..., 0] = equaliser.apply(np.ascontiguousarray(lab[..., 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


@register(HOST)
def jpeg(
    image: np.ndarray, rng: np.random.Generator, *, quality: IntOrRange = (30, 90)
) -> np.ndarray:
    """Re-encodes as JPEG at `quality` (1..100, or drawn uniformly from a (lo, hi) range)."""
    low, high = int_range("quality", quality, 1, 100)
    level = int(rng.integers(low, high + 1))
    bgr = cv2.cvtColor(rgb_uint8(image), cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, level])
    if not ok:
        raise RuntimeError(f"OpenCV failed to JPEG-encode an image of shape {image.shape}.")
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@register(HOST)
def posterize(image: np.ndarray, rng: np.random.Generator, *, bits: int = 4) -> np.ndarray:
    """Keeps the `bits` (1..8) most significant bits of each channel: 2**bits levels."""
    del rng  # deterministic
    check_int("bits", bits, 1, 8)
    mask = np.uint8((0xFF << (8 - bits)) & 0xFF)
    return np.bitwise_and(rgb_uint8(image), mask)


@register(HOST)
def edges(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    low: float = 100,
    high: float = 200,
    blend: float = 1.0,
) -> np.ndarray:
    """Canny edges (thresholds 0 <= low <= high) of the grey image, blended: blend in [0, 1].

    out = blend * edges + (1 - blend) * image, edges white (255) on black.
    """
    del rng  # deterministic
    check_number("low", low, 0.0)
    check_number("high", high, low)
    check_number("blend", blend, 0.0, 1.0)
    rgb = rgb_uint8(image)
    edge_map = cv2.Canny(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), float(low), float(high))
    edge_rgb = cv2.cvtColor(edge_map, cv2.COLOR_GRAY2RGB)
    return cv2.addWeighted(edge_rgb, float(blend), rgb, 1.0 - float(blend), 0.0)
