"""Per-image device ops in JAX: colour, noise, grid mask and random erasing.

Each has the device-op signature `op(image, key, *, params) -> image` on a float32 [H, W, 3] image
in pixel space [0, 1] with a raw PRNG key, and runs under jit, vmap and pmap: params are static
Python values, checked when the op is called (ValueError naming the param and its range), and no
Python control flow touches traced values. Colour and noise ops clip to [0, 1]; random erasing
does not (its fill is timm's normalised noise mapped back to pixel space). The registry adds the
application probability `p`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import dm_pix as pix
import jax
import jax.numpy as jnp

from bird_jax.augment.checks import Range, check_number, check_ordered, check_range
from bird_jax.augment.registry import DEVICE, register

# ITU-R 601 luma weights (they sum to 1, so a grey image is its own greyscale).
_LUMA = (0.299, 0.587, 0.114)
_ERASE_ATTEMPTS = 10
ERASE_MODES = ("const", "rand", "pixel")


def _check_image(image: jax.Array) -> None:
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"Expected an image of shape [H, W, 3], got {image.shape}.")


def _check_colour(name: str, value: Sequence[float], *, open_low: bool) -> jax.Array:
    """Per-channel values (a mean or std) in [0, 1] (or (0, 1]) as a float32 [3] array."""
    if not isinstance(value, Sequence) or len(value) != 3:
        raise ValueError(f"{name} must be 3 numbers in [0, 1], got {value!r}.")
    for channel in value:
        check_number(name, channel, 0.0, 1.0, open_low=open_low)
    return jnp.asarray(value, jnp.float32)


def _uniform(key: jax.Array, low: float, high: float) -> jax.Array:
    return jax.random.uniform(key, (), jnp.float32, low, high)


def _grey(image: jax.Array) -> jax.Array:
    """Luma [H, W, 1]."""
    return (image @ jnp.asarray(_LUMA, image.dtype))[..., None]


def _blend(image: jax.Array, other: jax.Array, factor: jax.Array) -> jax.Array:
    """`other + factor * (image - other)` clipped: torchvision's blend of image with `other`."""
    return jnp.clip(other + factor * (image - other), 0.0, 1.0)


def adjust_brightness(image: jax.Array, factor: jax.Array) -> jax.Array:
    """Multiplies by `factor` (torchvision's brightness: a blend with black); clipped."""
    return jnp.clip(image * factor, 0.0, 1.0)


def adjust_contrast(image: jax.Array, factor: jax.Array) -> jax.Array:
    """Scales deviations from the image's mean luma by `factor`; clipped."""
    return _blend(image, jnp.mean(_grey(image)), factor)


def adjust_saturation(image: jax.Array, factor: jax.Array) -> jax.Array:
    """Blends with the greyscale image (0 = grey, 1 = unchanged); clipped."""
    return _blend(image, _grey(image), factor)


def adjust_hue(image: jax.Array, delta: jax.Array) -> jax.Array:
    """Rotates hue by `delta` turns (0.5 = 180 degrees); clipped."""
    return jnp.clip(pix.adjust_hue(image, delta), 0.0, 1.0)


@register(DEVICE)
def brightness(image: jax.Array, key: jax.Array, *, max_delta: float = 0.2) -> jax.Array:
    """Adds one delta, uniform in [-max_delta, max_delta], to every pixel; clipped."""
    _check_image(image)
    max_delta = check_number("max_delta", max_delta, 0.0, 1.0)
    return jnp.clip(image + _uniform(key, -max_delta, max_delta), 0.0, 1.0)


def _random_factor(adjust: Callable, image: jax.Array, key: jax.Array, lower, upper) -> jax.Array:
    """`adjust(image, factor)` with a factor uniform in [lower, upper], checked."""
    _check_image(image)
    lower, upper = check_ordered(("lower", "upper"), (lower, upper), 0.0, math.inf)
    return adjust(image, _uniform(key, lower, upper))


@register(DEVICE)
def contrast(
    image: jax.Array, key: jax.Array, *, lower: float = 0.7, upper: float = 1.3
) -> jax.Array:
    """Scales deviations from the mean luma by a factor uniform in [lower, upper]; clipped."""
    return _random_factor(adjust_contrast, image, key, lower, upper)


@register(DEVICE)
def saturation(
    image: jax.Array, key: jax.Array, *, lower: float = 0.7, upper: float = 1.3
) -> jax.Array:
    """Blends with greyscale by a factor uniform in [lower, upper] (1 = unchanged); clipped."""
    return _random_factor(adjust_saturation, image, key, lower, upper)


@register(DEVICE)
def hue(image: jax.Array, key: jax.Array, *, max_delta: float = 0.05) -> jax.Array:
    """Rotates hue by a delta uniform in [-max_delta, max_delta] turns; clipped."""
    _check_image(image)
    max_delta = check_number("max_delta", max_delta, 0.0, 0.5)
    return adjust_hue(image, _uniform(key, -max_delta, max_delta))


def _bind(adjust: Callable, factor: jax.Array) -> Callable[[jax.Array], jax.Array]:
    return lambda image: adjust(image, factor)


@register(DEVICE)
def color_jitter(
    image: jax.Array,
    key: jax.Array,
    *,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.0,
) -> jax.Array:
    """torchvision/timm ColorJitter: the enabled adjustments, in a random order per image.

    Brightness, contrast and saturation factors are uniform in [max(0, 1 - s), 1 + s], the hue
    delta in [-hue, hue]; a strength of 0 disables that adjustment.
    """
    _check_image(image)
    strengths = {
        "brightness": check_number("brightness", brightness, 0.0),
        "contrast": check_number("contrast", contrast, 0.0),
        "saturation": check_number("saturation", saturation, 0.0),
        "hue": check_number("hue", hue, 0.0, 0.5),
    }
    adjustments = {
        "brightness": adjust_brightness,
        "contrast": adjust_contrast,
        "saturation": adjust_saturation,
        "hue": adjust_hue,
    }
    enabled = [name for name, strength in strengths.items() if strength > 0]
    if not enabled:
        return image
    order_key, *factor_keys = jax.random.split(key, len(enabled) + 1)
    branches = []
    for name, factor_key in zip(enabled, factor_keys, strict=True):
        s = strengths[name]
        low, high = (-s, s) if name == "hue" else (max(0.0, 1.0 - s), 1.0 + s)
        branches.append(_bind(adjustments[name], _uniform(factor_key, low, high)))
    order = jax.random.permutation(order_key, len(enabled))

    def apply_step(step: int, image: jax.Array) -> jax.Array:
        return jax.lax.switch(order[step], branches, image)

    # A loop rather than unrolled steps keeps one copy of the branches in the compiled program.
    return jax.lax.fori_loop(0, len(enabled), apply_step, image)


@register(DEVICE)
def gaussian_noise(image: jax.Array, key: jax.Array, *, sigma: Range = 0.05) -> jax.Array:
    """Adds per-pixel N(0, sigma) noise (sigma may be a (lo, hi) range drawn per image); clips."""
    _check_image(image)
    low, high = check_range("sigma", sigma, 0.0, 1.0)
    sigma_key, noise_key = jax.random.split(key)
    noise = jax.random.normal(noise_key, image.shape, image.dtype)
    return jnp.clip(image + _uniform(sigma_key, low, high) * noise, 0.0, 1.0)


@register(DEVICE)
def salt_pepper(
    image: jax.Array, key: jax.Array, *, amount: float = 0.02, salt_ratio: float = 0.5
) -> jax.Array:
    """Sets a fraction `amount` of pixels (all channels) to 1 (salt) or 0 (pepper)."""
    _check_image(image)
    amount = check_number("amount", amount, 0.0, 1.0)
    salt_ratio = check_number("salt_ratio", salt_ratio, 0.0, 1.0)
    noisy, salt = jnp.split(jax.random.uniform(key, (*image.shape[:2], 2)), 2, axis=-1)
    return jnp.clip(jnp.where(noisy < amount, salt < salt_ratio, image), 0.0, 1.0)


@register(DEVICE)
def grid_mask(
    image: jax.Array,
    key: jax.Array,
    *,
    ratio: float = 0.5,
    d_range: tuple[float, float] = (0.1, 0.3),
    fill: float = 0.0,
) -> jax.Array:
    """GridMask-style grid noise: square holes of side ratio * d on a grid of period d.

    The period d is uniform in `d_range` times the shorter image side, drawn per image with a
    random grid offset; holes are set to `fill`, so about ratio**2 of the image is hidden.
    """
    _check_image(image)
    ratio = check_number("ratio", ratio, 0.0, 1.0, open_low=True)
    d_low, d_high = check_range("d_range", d_range, 0.0, 1.0)
    check_number("d_range[0]", d_low, 0.0, 1.0, open_low=True)
    fill = check_number("fill", fill, 0.0, 1.0)
    height, width = image.shape[:2]
    d_key, y_key, x_key = jax.random.split(key, 3)
    period = _uniform(d_key, d_low, d_high) * min(height, width)
    side = ratio * period

    def in_hole(size: int, offset_key: jax.Array) -> jax.Array:
        return (jnp.arange(size) + _uniform(offset_key, 0.0, 1.0) * period) % period < side

    hole = in_hole(height, y_key)[:, None] & in_hole(width, x_key)[None, :]
    return jnp.where(hole[..., None], jnp.asarray(fill, image.dtype), image)


def _lerp(u: jax.Array, low: jax.Array | float, high: jax.Array | float) -> jax.Array:
    """Maps uniform [0, 1) samples onto [low, high)."""
    return low + u * (high - low)


def uniform_to_int(u: jax.Array, n: jax.Array | int) -> jax.Array:
    """Maps uniform [0, 1) samples onto the integers 0 .. n - 1 (int32), n >= 1.

    One uniform draw feeding several such indices compiles faster than several randint calls.
    """
    return jnp.minimum(jnp.floor(u * n), n - 1).astype(jnp.int32)


def _erase_mask(
    u: jax.Array,
    height: int,
    width: int,
    area_range: tuple[jax.Array, jax.Array],
    log_aspect: tuple[float, float],
) -> jax.Array:
    """bool [H, W]: the first of timm's candidate boxes that fits, or nothing if none does.

    `u` holds 2 * _ERASE_ATTEMPTS + 2 uniform samples: areas, aspects, then top and left.
    """
    area = _lerp(u[:_ERASE_ATTEMPTS], *area_range) * height * width
    aspect = jnp.exp(_lerp(u[_ERASE_ATTEMPTS:-2], *log_aspect))
    box_h = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
    box_w = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
    fits = (box_h < height) & (box_w < width)
    first = jnp.argmax(fits)
    box_h, box_w = box_h[first] * fits[first], box_w[first] * fits[first]
    top = uniform_to_int(u[-2], height - box_h + 1)
    left = uniform_to_int(u[-1], width - box_w + 1)
    rows = jnp.arange(height)[:, None]
    cols = jnp.arange(width)[None, :]
    return (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w)


@register(DEVICE)
def random_erasing(
    image: jax.Array,
    key: jax.Array,
    *,
    mode: str = "pixel",
    max_count: int = 1,
    min_area: float = 0.02,
    max_area: float = 1 / 3,
    min_aspect: float = 0.3,
    max_aspect: float | None = None,
    mean: Sequence[float],
    std: Sequence[float],
) -> jax.Array:
    """timm's RandomErasing, in pixel space before normalisation.

    1 to `max_count` boxes; each takes the first of 10 candidates (area fraction uniform in
    [min_area, max_area] / count, aspect log-uniform in [min_aspect, max_aspect or 1/min_aspect])
    that fits. Fill is `mean + std * z` so that after `(x - mean) / std` it is timm's value z:
    0 ('const'), one N(0, 1) colour per box ('rand') or N(0, 1) per pixel ('pixel'). Not clipped.
    """
    _check_image(image)
    if mode not in ERASE_MODES:
        raise ValueError(f"mode must be one of {ERASE_MODES}, got {mode!r}.")
    if isinstance(max_count, bool) or not isinstance(max_count, int) or max_count < 1:
        raise ValueError(f"max_count must be an integer in [1, inf), got {max_count!r}.")
    min_area, max_area = check_ordered(("min_area", "max_area"), (min_area, max_area), 0.0, 1.0)
    min_aspect = check_number("min_aspect", min_aspect, 0.0, open_low=True)
    max_aspect = 1 / min_aspect if max_aspect is None else max_aspect
    max_aspect = check_number("max_aspect", max_aspect, min_aspect)
    mean = _check_colour("mean", mean, open_low=False)
    std = _check_colour("std", std, open_low=True)
    height, width = image.shape[:2]
    uniform_key, fill_key = jax.random.split(key)
    # One row of samples per box; the spare last sample of row 0 draws the count.
    u = jax.random.uniform(uniform_key, (max_count, 2 * _ERASE_ATTEMPTS + 3))
    count = 1 + uniform_to_int(u[0, -1], max_count)
    area_range = (min_area / count, max_area / count)
    log_aspect = (math.log(min_aspect), math.log(max_aspect))
    fill_shape = image.shape if mode == "pixel" else (3,)
    z_shape = (max_count, *fill_shape)
    z = jnp.zeros(z_shape) if mode == "const" else jax.random.normal(fill_key, z_shape)
    for box in range(max_count):
        mask = _erase_mask(u[box, :-1], height, width, area_range, log_aspect) & (box < count)
        image = jnp.where(mask[..., None], (mean + std * z[box]).astype(image.dtype), image)
    return image
