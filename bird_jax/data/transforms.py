"""Per-image Grain transforms on records {'image': uint8 [H, W, 3], 'label': int32}.

Train: the host half of data.train_pipeline (bird_jax.augment), e.g. random-resized-crop and flip,
drawing from the per-record generator Grain derives from the seed and the record's position, so
augmentation is reproducible. Eval: the host ops of data.eval_pipeline (bird_jax.augment.evaluation;
by default resize the shorter side to image_size / 0.875 and keep the central image_size square),
deterministic. Both stay uint8 — a quarter of float32's bytes to the device — and are normalised
on the device.
"""

from __future__ import annotations

import dataclasses

import grain

from bird_jax import augment


def check_data_config(data_config) -> None:
    """ValueError naming the key if an input setting is out of range; data.eval_pipeline is
    parsed here too, so a bad one stops training at start-up, not at the first evaluation."""
    if data_config.image_size <= 0:
        raise ValueError(f"data.image_size must be positive, got {data_config.image_size}.")
    if len(data_config.mean) != 3 or len(data_config.std) != 3 or min(data_config.std) <= 0:
        raise ValueError("data.mean and data.std need 3 values each, std positive.")
    augment.eval_pipeline(data_config)


class DropUndecodable(grain.transforms.Filter):
    """Drops records whose file failed to decode (the source logged a warning)."""

    def filter(self, record: dict) -> bool:
        return record["image"] is not None


@dataclasses.dataclass(frozen=True)
class EvalHostOps(grain.transforms.Map):
    """The host ops of data.eval_pipeline as a Grain transform (augment.preprocess_for_eval)."""

    ops: tuple[augment.Op, ...]

    def map(self, record: dict) -> dict:
        return {**record, "image": augment.apply_eval_ops(self.ops, record["image"])}


def train_transforms(data_config) -> list:
    """The host ops of data.train_pipeline (uint8 out); records must hold a decoded image (the
    train stream replaces undecodable ones)."""
    check_data_config(data_config)
    pipeline = augment.train_pipeline(data_config)
    return [augment.HostAugment(pipeline.host)]


def eval_transforms(data_config) -> list:
    """Decode guard, then the host ops of data.eval_pipeline (uint8 out)."""
    check_data_config(data_config)
    return [DropUndecodable(), EvalHostOps(augment.eval_pipeline(data_config).host)]
