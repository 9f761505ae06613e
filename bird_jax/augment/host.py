"""The host half of a pipeline as one Grain transform, run per record in the input workers."""

from __future__ import annotations

import dataclasses

import grain
import numpy as np

from bird_jax.augment.registry import Op


def apply_host_ops(ops: tuple[Op, ...], image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Applies `ops` in order, each with its probability; uint8 [H, W, 3] in and out."""
    for op in ops:
        if op.p >= 1 or rng.random() < op.p:
            image = op.fn(image, rng)
    return np.ascontiguousarray(image)


@dataclasses.dataclass(frozen=True)
class HostAugment(grain.transforms.RandomMap):
    """Grain transform over records {'image', 'label'}; Grain seeds `rng` per record."""

    ops: tuple[Op, ...]

    def random_map(self, record: dict, rng: np.random.Generator) -> dict:
        return {**record, "image": apply_host_ops(self.ops, record["image"], rng)}
