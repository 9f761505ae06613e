"""Per-image Grain transforms on records {'image': uint8 [H, W, 3], 'label': int32}.

Train: the host half of data.train_pipeline (bird_jax.augment), e.g. random-resized-crop and flip.
Eval: resize the shorter side to image_size / eval_crop_pct and centre-crop image_size (one PIL
resize of the central box). Both stay uint8 — a quarter of float32's bytes to the device — and
are normalised on the device. Random transforms draw from the per-record generator Grain derives
from the seed and the record's position, so augmentation is reproducible.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import grain
import numpy as np

from bird_jax import augment
from bird_jax.augment.crops import center_crop, resampling


def check_data_config(data_config) -> None:
    """ValueError naming the key if an input setting is out of range."""
    if not 0 < data_config.eval_crop_pct <= 1:
        raise ValueError(f"data.eval_crop_pct must be in (0, 1], got {data_config.eval_crop_pct}.")
    if data_config.image_size <= 0:
        raise ValueError(f"data.image_size must be positive, got {data_config.image_size}.")
    if len(data_config.mean) != 3 or len(data_config.std) != 3 or min(data_config.std) <= 0:
        raise ValueError("data.mean and data.std need 3 values each, std positive.")
    resampling(data_config.interpolation)


def _eval_crop(data_config) -> Callable:
    """The evaluation crop as a host op `(image, rng) -> image`."""
    return functools.partial(
        center_crop,
        size=data_config.image_size,
        crop_pct=data_config.eval_crop_pct,
        interpolation=data_config.interpolation,
    )


def preprocess_for_eval(image: np.ndarray, data_config) -> np.ndarray:
    """HxWx3 uint8 -> uint8 [image_size, image_size, 3], cropped exactly as in evaluation."""
    return _eval_crop(data_config)(image, None)


class DropUndecodable(grain.transforms.Filter):
    """Drops records whose file failed to decode (the source logged a warning)."""

    def filter(self, record: dict) -> bool:
        return record["image"] is not None


@dataclasses.dataclass(frozen=True)
class EvalCrop(grain.transforms.Map):
    """preprocess_for_eval as a Grain transform."""

    crop: Callable  # _eval_crop(data_config)

    def map(self, record: dict) -> dict:
        return {**record, "image": self.crop(record["image"], None)}


def train_transforms(data_config) -> list:
    """The host ops of data.train_pipeline (uint8 out); records must hold a decoded image (the
    train stream replaces undecodable ones)."""
    check_data_config(data_config)
    pipeline = augment.train_pipeline(data_config)
    return [augment.HostAugment(pipeline.host)]


def eval_transforms(data_config) -> list:
    """Decode guard, resize + centre crop (uint8 out)."""
    check_data_config(data_config)
    return [DropUndecodable(), EvalCrop(_eval_crop(data_config))]
