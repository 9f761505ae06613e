"""Differentiable Siamese Augmentation (DSA) for dataset distillation, in JAX.

Zhao & Bilen, "Dataset Condensation with Differentiable Siamese Augmentation", ICML 2021
(arXiv:2102.08259); the official PyTorch code is `DiffAugment` and its `rand_*` ops in
https://github.com/VICO-UoE/DatasetCondensation (utils.py), with `ParamDiffAug`'s defaults and
aug_mode 'S': each call draws one group of the strategy uniformly and applies that group's ops
(`color` is brightness, saturation and contrast; every other group is one op).

Images are a float32 batch [N, H, W, C] in the normalised space ((x / 255 - mean) / std), and
every op is differentiable with respect to them. With `shared=True` (the Siamese mode), one
parameter set, drawn from the key alone, is applied to every image, so the real and the synthetic
batches get the same transform whatever their sizes; with `shared=False` each image draws its own
parameters (the group is still one per call).

Each op is a pair: `sample(key, (H, W))` draws one image's parameters, `apply(image, params)`
transforms one image [H, W, C] with explicit parameters (exposed for tests and reuse).

Differences from the official code: randomness comes from the JAX key (one split per op) rather
than torch's global generator reseeded per op, and the shared mode draws one parameter set
instead of drawing N and copying the first. Crop fills zeros outside the image (the official code
pads one zero pixel and clamps to it: the same values). Scale and rotate sample with
align_corners=True; PyTorch's affine_grid/grid_sample default (False) maps the same pixels for
square images and differs slightly (by the (n - 1) / n ratio of the axes) only for rotations of
non-square ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

STRATEGY = "color_crop_cutout_flip_scale_rotate"

# ParamDiffAug's defaults.
_BRIGHTNESS = 1.0
_SATURATION = 2.0
_CONTRAST = 0.5
_CROP_PAD = 0.125
_CUTOUT = 0.5
_FLIP_PROB = 0.5
_SCALE = 1.2
_ROTATE_DEGREES = 15.0

Size = tuple[int, int]


def _uniform(key: jax.Array, size: Size) -> jax.Array:
    del size
    return jax.random.uniform(key, (), jnp.float32)


def brightness(image: jax.Array, u: jax.Array) -> jax.Array:
    """Adds (u - 0.5) * 1.0 to every value."""
    return image + (u - 0.5) * _BRIGHTNESS


def saturation(image: jax.Array, u: jax.Array) -> jax.Array:
    """Scales each pixel's deviation from its channel mean by u * 2.0."""
    mean = jnp.mean(image, axis=-1, keepdims=True)
    return (image - mean) * (u * _SATURATION) + mean


def contrast(image: jax.Array, u: jax.Array) -> jax.Array:
    """Scales deviations from the image's mean (over H, W, C) by u + 0.5."""
    mean = jnp.mean(image)
    return (image - mean) * (u + _CONTRAST) + mean


def _crop_shifts(size: Size) -> tuple[int, int]:
    return tuple(int(n * _CROP_PAD + 0.5) for n in size)


def _sample_crop(key: jax.Array, size: Size) -> jax.Array:
    limit = jnp.asarray(_crop_shifts(size))
    return jax.random.randint(key, (2,), -limit, limit + 1)


def _box(size: Size, start: jax.Array, lengths: Size) -> jax.Array:
    """[H, W] mask, true on rows [start[0], start[0] + lengths[0]) x the same for columns."""
    rows, cols = (
        (jnp.arange(n) >= first) & (jnp.arange(n) < first + length)
        for n, first, length in zip(size, start, lengths, strict=True)
    )
    return rows[:, None] & cols[None, :]


def crop(image: jax.Array, shift: jax.Array) -> jax.Array:
    """Translates: output[i, j] = image[i + shift[0], j + shift[1]], zero outside the image."""
    h, w = image.shape[:2]
    rows = jnp.clip(jnp.arange(h) + shift[0], 0, h - 1)
    cols = jnp.clip(jnp.arange(w) + shift[1], 0, w - 1)
    inside = _box((h, w), -shift, (h, w))
    return jnp.where(inside[..., None], image[rows][:, cols], 0.0)


def _cutout_sizes(size: Size) -> tuple[int, int]:
    return tuple(int(n * _CUTOUT + 0.5) for n in size)


def _sample_cutout(key: jax.Array, size: Size) -> jax.Array:
    high = [n + (1 - c % 2) for n, c in zip(size, _cutout_sizes(size), strict=True)]
    return jax.random.randint(key, (2,), 0, jnp.asarray(high))


def cutout(image: jax.Array, centre: jax.Array) -> jax.Array:
    """Zeroes a box of half the image's size per axis centred at `centre` (row, column)."""
    size = image.shape[:2]
    lengths = _cutout_sizes(size)
    hole = _box(size, centre - jnp.asarray(lengths) // 2, lengths)
    return image * (~hole)[..., None].astype(image.dtype)


def _sample_flip(key: jax.Array, size: Size) -> jax.Array:
    return _uniform(key, size) < _FLIP_PROB


def flip(image: jax.Array, flipped: jax.Array) -> jax.Array:
    """Mirrors the width axis where `flipped` is true."""
    return jnp.where(flipped, image[:, ::-1], image)


def _affine(image: jax.Array, matrix: jax.Array) -> jax.Array:
    """Bilinear sampling of output (x, y) in [-1, 1]^2 at input matrix @ (x, y), zeros outside.

    PyTorch's `affine_grid` + `grid_sample` with align_corners=True: -1 and 1 are the centres of
    the first and last pixels; x runs along the width, y along the height.
    """
    h, w = image.shape[:2]
    y, x = jnp.meshgrid(jnp.linspace(-1.0, 1.0, h), jnp.linspace(-1.0, 1.0, w), indexing="ij")
    source_x = matrix[0, 0] * x + matrix[0, 1] * y
    source_y = matrix[1, 0] * x + matrix[1, 1] * y
    coordinates = [(source_y + 1.0) * ((h - 1) / 2), (source_x + 1.0) * ((w - 1) / 2)]
    sample = lambda channel: map_coordinates(channel, coordinates, order=1, mode="constant")
    return jax.vmap(sample, in_axes=-1, out_axes=-1)(image)


def _sample_scale(key: jax.Array, size: Size) -> jax.Array:
    return jax.random.uniform(key, (2,), jnp.float32, 1.0 / _SCALE, _SCALE)


def scale(image: jax.Array, factors: jax.Array) -> jax.Array:
    """Samples output (x, y) at (factors[0] * x, factors[1] * y): factors > 1 zoom out."""
    return _affine(image, jnp.diag(factors))


def _sample_rotate(key: jax.Array, size: Size) -> jax.Array:
    return (_uniform(key, size) - 0.5) * 2 * _ROTATE_DEGREES


def rotate(image: jax.Array, degrees: jax.Array) -> jax.Array:
    """Samples output (x, y) at the input rotated by `degrees` (theta [[c, -s], [s, c]])."""
    c, s = jnp.cos(jnp.deg2rad(degrees)), jnp.sin(jnp.deg2rad(degrees))
    return _affine(image, jnp.stack([jnp.stack([c, -s]), jnp.stack([s, c])]))


class Op(NamedTuple):
    """One image's parameters from a key and the image size; the op on one image."""

    sample: Callable[[jax.Array, Size], Any]
    apply: Callable[[jax.Array, Any], jax.Array]


OPS = {
    "brightness": Op(_uniform, brightness),
    "saturation": Op(_uniform, saturation),
    "contrast": Op(_uniform, contrast),
    "crop": Op(_sample_crop, crop),
    "cutout": Op(_sample_cutout, cutout),
    "flip": Op(_sample_flip, flip),
    "scale": Op(_sample_scale, scale),
    "rotate": Op(_sample_rotate, rotate),
}
GROUPS = {
    "color": ("brightness", "saturation", "contrast"),
    "crop": ("crop",),
    "cutout": ("cutout",),
    "flip": ("flip",),
    "scale": ("scale",),
    "rotate": ("rotate",),
}


def parse_strategy(strategy: str) -> list[str]:
    """The strategy's groups ('_'-separated); [] for 'none' or ''. ValueError on unknown names."""
    if strategy.lower() in ("", "none"):
        return []
    groups = strategy.split("_")
    unknown = [group for group in groups if group not in GROUPS]
    if unknown:
        raise ValueError(
            f"Unknown DSA augmentation {unknown} in strategy {strategy!r}; known: "
            f"{', '.join(GROUPS)} (joined by '_'), or 'none'."
        )
    return groups


def _apply_op(op: Op, key: jax.Array, images: jax.Array, shared: bool) -> jax.Array:
    size = images.shape[1:3]
    if shared:
        return jax.vmap(op.apply, in_axes=(0, None))(images, op.sample(key, size))
    keys = jax.random.split(key, images.shape[0])
    params = jax.vmap(op.sample, in_axes=(0, None))(keys, size)
    return jax.vmap(op.apply)(images, params)


def _group_fn(group: str, shared: bool) -> Callable[[jax.Array, jax.Array], jax.Array]:
    names = GROUPS[group]

    def apply(key: jax.Array, images: jax.Array) -> jax.Array:
        out = images
        for name, op_key in zip(names, jax.random.split(key, len(names)), strict=True):
            out = _apply_op(OPS[name], op_key, out, shared)
        return out.astype(images.dtype)

    return apply


def augment(
    key: jax.Array, images: jax.Array, strategy: str = STRATEGY, *, shared: bool
) -> jax.Array:
    """DSA on a batch [N, H, W, C]: one group of `strategy`, drawn from `key`, applied.

    `shared=True` applies one parameter set (a function of `key` alone) to every image, the
    Siamese mode for real and synthetic batches; `shared=False` draws parameters per image.
    `strategy` and `shared` are static (parsed in Python), so this is jittable and vmappable.
    """
    groups = parse_strategy(strategy)
    if images.ndim != 4:
        raise ValueError(f"Expected images of shape [N, H, W, C], got {images.shape}.")
    if not groups:
        return images
    group_key, op_key = jax.random.split(key)
    index = jax.random.randint(group_key, (), 0, len(groups))
    branches = [_group_fn(group, shared) for group in groups]
    return jax.lax.switch(index, branches, op_key, images)
