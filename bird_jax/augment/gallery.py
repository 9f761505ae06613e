"""Augmented samples for viewing: one op at a time, or the whole train pipeline.

Used by `python -m bird_jax.preview`, by the train loop's TensorBoard input grid and by the
data-exploration notebook. Everything returns uint8 [N, H, W, 3] images.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bird_jax.augment.device import DeviceAugment
from bird_jax.augment.host import apply_host_ops
from bird_jax.augment.registry import BATCH, DEVICE, HOST, Op, Pipeline


def denormalize(images, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalised float images -> uint8 pixels (the inverse of augment.normalize, clipped)."""
    pixels = np.asarray(images, np.float32) * np.asarray(std) + np.asarray(mean)
    return np.clip(np.round(pixels * 255.0), 0, 255).astype(np.uint8)


def apply_device_half(
    pipeline: Pipeline,
    data_config,
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    seed: int = 0,
) -> np.ndarray:
    """The pipeline's device ops and batch op on uint8 [N, S, S, 3] images, as uint8 again."""
    if not pipeline.device and pipeline.batch is None:
        return np.asarray(images)
    device = DeviceAugment.from_pipeline(pipeline, data_config)
    targets = jax.nn.one_hot(jnp.asarray(labels), num_classes)
    out, _ = jax.jit(device)(jnp.asarray(images), targets, jax.random.PRNGKey(seed))
    return denormalize(out, device.mean, device.std)


def apply_op(
    op: Op,
    data_config,
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    seed: int = 0,
) -> np.ndarray:
    """One op (always applied, whatever its p) on uint8 [N, S, S, 3] images -> uint8."""
    always = Op(op.name, op.kind, op.fn, p=1.0)
    if op.kind == HOST:
        return np.stack(
            [
                apply_host_ops((always,), image, np.random.default_rng([seed, index]))
                for index, image in enumerate(images)
            ]
        )
    pipeline = Pipeline(
        host=(),
        device=(always,) if op.kind == DEVICE else (),
        batch=always if op.kind == BATCH else None,
    )
    return apply_device_half(pipeline, data_config, images, labels, num_classes, seed)


def apply_pipeline(
    pipeline: Pipeline,
    data_config,
    raw_images: Sequence[np.ndarray],
    labels: np.ndarray,
    num_classes: int,
    seed: int = 0,
) -> np.ndarray:
    """The whole train pipeline on raw uint8 images of any size -> uint8 [N, S, S, 3]."""
    host = np.stack(
        [
            apply_host_ops(pipeline.host, image, np.random.default_rng([seed, index]))
            for index, image in enumerate(raw_images)
        ]
    )
    return apply_device_half(pipeline, data_config, host, labels, num_classes, seed)
