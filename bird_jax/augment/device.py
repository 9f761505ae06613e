"""The device half of a pipeline, run inside the pmapped train step on uint8 batches.

Every example's randomness is keyed by its GLOBAL index in the batch (device index x per-device
batch + position), never by the device, so one seed gives the same augmented batch on 1 or 8
devices. The output is normalised float32, ready for the model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from bird_jax.augment.registry import Op, Pipeline


def standardize(pixels: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
    """float pixels in [0, 1] -> float32 (pixels - mean) / std."""
    return (pixels.astype(jnp.float32) - jnp.asarray(mean, jnp.float32)) / jnp.asarray(
        std, jnp.float32
    )


def normalize(images: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
    """uint8 images -> float32 (images / 255 - mean) / std."""
    return standardize(images.astype(jnp.float32) / 255.0, mean, std)


def _apply_per_image(op: Op, images: jax.Array, keys: jax.Array) -> jax.Array:
    def one(image, key):
        coin_key, op_key = jax.random.split(key)
        out = op.fn(image, op_key)
        if op.p >= 1:
            return out
        return jnp.where(jax.random.uniform(coin_key) < op.p, out, image)

    return jax.vmap(one)(images, keys)


@dataclasses.dataclass(frozen=True)
class DeviceAugment:
    """Per-image device ops, the batch op (Mixup/CutMix), then normalisation."""

    ops: tuple[Op, ...]
    batch_op: Op | None
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_pipeline(cls, pipeline: Pipeline, data_config) -> DeviceAugment:
        return cls(pipeline.device, pipeline.batch, tuple(data_config.mean), tuple(data_config.std))

    def __call__(
        self,
        images: jax.Array,
        targets: jax.Array,
        key: jax.Array,
        axis_name: str | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """uint8 [B, H, W, 3] images and [B, K] targets -> normalised images, mixed targets.

        `key` must be the same on every device; with `axis_name` the batch is one shard of a
        global batch split over that pmap axis.
        """
        batch = images.shape[0]
        if axis_name is None:
            first, global_size = 0, batch
        else:
            first = jax.lax.axis_index(axis_name) * batch
            global_size = jax.lax.axis_size(axis_name) * batch
        global_index = first + jnp.arange(batch, dtype=jnp.int32)
        pixels = images.astype(jnp.float32) / 255.0
        for position, op in enumerate(self.ops):
            op_key = jax.random.fold_in(key, position)
            keys = jax.vmap(lambda index, k=op_key: jax.random.fold_in(k, index))(global_index)
            pixels = _apply_per_image(op, pixels, keys)
        if self.batch_op is not None:
            batch_key = jax.random.fold_in(key, len(self.ops))
            pixels, targets = self.batch_op.fn(
                pixels, targets, batch_key, global_index, global_size, axis_name=axis_name
            )
        return standardize(pixels, self.mean, self.std), targets
