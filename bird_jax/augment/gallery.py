"""Augmented samples for viewing: one op at a time, or the whole train pipeline.

Used by `python -m bird_jax.preview`, by the train loop's TensorBoard images at the start of a
run and by the data-exploration notebook. Images are uint8 [N, H, W, 3].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bird_jax.augment.device import DeviceAugment
from bird_jax.augment.evaluation import preprocess_for_eval
from bird_jax.augment.host import apply_host_ops
from bird_jax.augment.registry import (
    BATCH,
    DEVICE,
    HOST,
    Op,
    Pipeline,
    parse_ops,
    train_pipeline,
)


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
    always = dataclasses.replace(op, p=1.0)
    alone = Pipeline(
        host=(always,) if op.kind == HOST else (),
        device=(always,) if op.kind == DEVICE else (),
        batch=always if op.kind == BATCH else None,
    )
    return apply_pipeline(alone, data_config, images, labels, num_classes, seed)


def apply_pipeline(
    pipeline: Pipeline,
    data_config,
    raw_images: Sequence[np.ndarray],
    labels: np.ndarray,
    num_classes: int,
    seed: int = 0,
) -> np.ndarray:
    """A pipeline on uint8 images of any size -> uint8 [N, S, S, 3] (image i seeded [seed, i])."""
    host = np.stack(
        [
            apply_host_ops(pipeline.host, image, np.random.default_rng([seed, index]))
            for index, image in enumerate(raw_images)
        ]
    )
    return apply_device_half(pipeline, data_config, host, labels, num_classes, seed)


def pick_examples(source, count: int) -> list[int]:
    """Indices of `count` examples, cycling through the classes so the rows show variety."""
    labels = np.asarray(source.labels)
    by_class = [np.flatnonzero(labels == label) for label in np.unique(labels)]
    picked, rank = [], 0
    while len(picked) < min(count, len(labels)):
        picked += [int(indices[rank]) for indices in by_class if rank < len(indices)]
        rank += 1
    return picked[:count]


def preview_rows(
    config,
    info,
    split: str,
    num_images: int = 6,
    ops_spec: str | None = None,
    pipeline_rows: int = 2,
    seed: int = 0,
) -> list[tuple[str, np.ndarray]]:
    """(title, uint8 images) rows: originals, each op alone (p=1), whole-pipeline samples.

    `info` is the loaded dataset (data.load_splits: anything with .source(split) and
    .num_classes); originals are preprocessed as in evaluation; the ops shown are those of
    `ops_spec`, or of config.data.train_pipeline when None.
    """
    source = info.source(split)
    records = [source[i] for i in pick_examples(source, num_images)]
    records = [record for record in records if record["image"] is not None]
    raw = [record["image"] for record in records]
    labels = np.array([record["label"] for record in records])
    originals = np.stack([preprocess_for_eval(image, config.data) for image in raw])
    pipeline = train_pipeline(config.data)
    shown = pipeline.ops
    if ops_spec:
        shown = parse_ops(
            ops_spec,
            image_size=config.data.image_size,
            mean=config.data.mean,
            std=config.data.std,
        )
    rows = [("original", originals)]
    for op in shown:
        images = apply_op(op, config.data, originals, labels, info.num_classes, seed)
        rows.append((str(dataclasses.replace(op, p=1.0)), images))
    for row in range(pipeline_rows):
        images = apply_pipeline(
            pipeline, config.data, raw, labels, info.num_classes, seed + 1 + row
        )
        rows.append((f"train pipeline #{row + 1}", images))
    return rows
