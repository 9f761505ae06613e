"""Mixup and CutMix on the device with timm's Mixup semantics, over a pmap-sharded batch.

Example g of a global batch of N is mixed with its partner N - 1 - g (timm's flipped batch),
which may live on another device: `global_partner` fetches it with one ppermute. Random draws are
keyed by `key` alone ('batch' mode) or by the global index ('elem', 'pair'), never by the device,
so the mixed batch does not depend on how many devices share it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from bird_jax.augment.checks import check_number, check_range
from bird_jax.augment.device_ops import uniform_to_int
from bird_jax.augment.registry import BATCH, register

MODES = ("batch", "pair", "elem")

Box = tuple[jax.Array, jax.Array, jax.Array, jax.Array]  # top, bottom, left, right (exclusive)


def smooth_one_hot(labels: jax.Array, num_classes: int, smoothing: float = 0.0) -> jax.Array:
    """float32 [..., K] one-hot targets, smoothed: off = smoothing / K, on = 1 - smoothing + off."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer in [1, inf), got {num_classes!r}.")
    smoothing = check_number("smoothing", smoothing, 0.0, 1.0)
    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    hot = jnp.asarray(labels)[..., None] == jnp.arange(num_classes)
    return jnp.where(hot, on, off).astype(jnp.float32)


def global_partner(x: jax.Array, axis_name: str | None) -> jax.Array:
    """For each local row, the row of global example N - 1 - g (g this row's global index).

    Under pmap over `axis_name` (device d holds rows [d * B, (d + 1) * B)), the partner rows sit
    reversed on device D - 1 - d; without an axis the whole batch is local and simply flipped.
    """
    if axis_name is not None:
        devices = jax.lax.axis_size(axis_name)
        perm = [(devices - 1 - d, d) for d in range(devices)]
        x = jax.lax.ppermute(x, axis_name, perm)
    return jnp.flip(x, axis=0)


def _check_params(
    mixup_alpha: float,
    cutmix_alpha: float,
    prob: float,
    switch_prob: float,
    mode: str,
    cutmix_minmax: tuple[float, float] | None,
) -> None:
    check_number("mixup_alpha", mixup_alpha, 0.0)
    check_number("cutmix_alpha", cutmix_alpha, 0.0)
    check_number("prob", prob, 0.0, 1.0)
    check_number("switch_prob", switch_prob, 0.0, 1.0)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    if cutmix_minmax is not None:
        low, high = check_range("cutmix_minmax", cutmix_minmax, 0.0, 1.0)
        check_number("cutmix_minmax[0]", low, 0.0, high, open_low=True)
    elif mixup_alpha == 0 and cutmix_alpha == 0:
        raise ValueError("mixup_alpha or cutmix_alpha must be > 0 (or cutmix_minmax set).")


def _box(
    u: jax.Array,
    lam: jax.Array,
    height: int,
    width: int,
    cutmix_minmax: tuple[float, float] | None,
) -> Box:
    """timm's CutMix box from 4 uniform samples `u`: sides sqrt(1 - lam) of the image's, centred
    anywhere and clipped; or, with `cutmix_minmax`, sides uniform in [int(min * side),
    int(max * side)) placed wholly inside the image."""
    if cutmix_minmax is None:
        ratio = jnp.sqrt(1.0 - lam)
        half_h = (height * ratio).astype(jnp.int32) // 2
        half_w = (width * ratio).astype(jnp.int32) // 2
        center_y, center_x = uniform_to_int(u[0], height), uniform_to_int(u[1], width)
        top, bottom = jnp.clip(center_y - half_h, 0, height), jnp.clip(center_y + half_h, 0, height)
        left, right = jnp.clip(center_x - half_w, 0, width), jnp.clip(center_x + half_w, 0, width)
        return top, bottom, left, right
    low, high = cutmix_minmax

    def side(sample: jax.Array, size: int) -> jax.Array:
        shortest, longest = int(size * low), int(size * high)
        return shortest + uniform_to_int(sample, max(longest - shortest, 1))

    cut_h, cut_w = side(u[2], height), side(u[3], width)
    top = uniform_to_int(u[0], jnp.maximum(height - cut_h, 1))
    left = uniform_to_int(u[1], jnp.maximum(width - cut_w, 1))
    return top, top + cut_h, left, left + cut_w


def _draw(
    key: jax.Array,
    *,
    height: int,
    width: int,
    mixup_alpha: float,
    cutmix_alpha: float,
    prob: float,
    switch_prob: float,
    correct_lam: bool,
    cutmix_minmax: tuple[float, float] | None,
) -> tuple[jax.Array, jax.Array, Box]:
    """One timm decision: (lam, use CutMix, box); lam = 1 and no CutMix when not applied."""
    lam_key, uniform_key = jax.random.split(key)
    u = jax.random.uniform(uniform_key, (6,))  # apply, switch, then 4 for the box
    apply = u[0] < prob
    if mixup_alpha > 0 and cutmix_alpha > 0:
        cutmix = u[1] < switch_prob
    else:
        cutmix = jnp.asarray(cutmix_alpha > 0)
    alpha = jnp.where(cutmix, cutmix_alpha, mixup_alpha)
    lam = jax.random.beta(lam_key, alpha, alpha)
    box = _box(u[2:], lam, height, width, cutmix_minmax)
    if correct_lam or cutmix_minmax is not None:
        top, bottom, left, right = box
        box_lam = 1.0 - (bottom - top) * (right - left) / (height * width)
        lam = jnp.where(cutmix, box_lam, lam)
    return jnp.where(apply, lam, 1.0), cutmix & apply, box


@register(BATCH, name="mixup")
def mix(
    images: jax.Array,
    targets: jax.Array,
    key: jax.Array,
    global_index: jax.Array,
    global_size: int,
    *,
    axis_name: str | None,
    mixup_alpha: float = 0.8,
    cutmix_alpha: float = 1.0,
    prob: float = 1.0,
    switch_prob: float = 0.5,
    mode: str = "batch",
    correct_lam: bool = True,
    cutmix_minmax: tuple[float, float] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Mixup or CutMix of each example with its global partner, as timm's Mixup.

    images float32 [B, H, W, 3], targets float32 [B, K] (already smoothed: mixing is linear, so
    this equals timm's mix of smoothed one-hots), `key` the same on every device, global_index
    int32 [B]. 'batch' draws one decision for all, 'elem' one per example from
    fold_in(key, g), 'pair' one per pair from fold_in(key, min(g, N - 1 - g)) so that both
    partners share lam and box. With probability 1 - prob an example (or the batch) is unchanged.
    Returns the mixed images and lam * targets + (1 - lam) * partner targets.
    """
    _check_params(mixup_alpha, cutmix_alpha, prob, switch_prob, mode, cutmix_minmax)
    if images.ndim != 4 or targets.ndim != 2 or global_index.shape != images.shape[:1]:
        raise ValueError(
            "Expected images [B, H, W, C], targets [B, K] and global_index [B], got "
            f"{images.shape}, {targets.shape} and {global_index.shape}."
        )
    batch, height, width = images.shape[:3]
    devices = 1 if axis_name is None else jax.lax.axis_size(axis_name)
    if global_size % 2 or global_size != batch * devices:
        raise ValueError(
            f"global_size must be even and equal {devices} devices x {batch} examples, "
            f"got {global_size}."
        )
    draw = functools.partial(
        _draw,
        height=height,
        width=width,
        mixup_alpha=mixup_alpha,
        cutmix_alpha=1.0 if cutmix_minmax is not None else cutmix_alpha,
        prob=prob,
        switch_prob=switch_prob,
        correct_lam=correct_lam,
        cutmix_minmax=cutmix_minmax,
    )
    if mode == "batch":
        lam, cutmix, box = jax.tree.map(lambda v: jnp.broadcast_to(v, (batch,)), draw(key))
    else:
        ids = global_index
        if mode == "pair":
            ids = jnp.minimum(global_index, global_size - 1 - global_index)
        keys = jax.vmap(jax.random.fold_in, (None, 0))(key, ids)
        lam, cutmix, box = jax.vmap(draw)(keys)
    top, bottom, left, right = (edge[:, None, None] for edge in box)
    rows = jnp.arange(height)[None, :, None]
    cols = jnp.arange(width)[None, None, :]
    in_box = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
    partner = global_partner(images, axis_name)
    lam_4d = lam[:, None, None, None].astype(images.dtype)
    blended = lam_4d * images + (1 - lam_4d) * partner
    pasted = jnp.where(in_box[..., None], partner, images)
    images = jnp.where(cutmix[:, None, None, None], pasted, blended)
    lam_2d = lam[:, None].astype(targets.dtype)
    targets = lam_2d * targets + (1 - lam_2d) * global_partner(targets, axis_name)
    return images, targets
