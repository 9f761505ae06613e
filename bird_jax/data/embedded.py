"""The embedded default dataset: scikit-learn's 8x8 handwritten digits, upscaled to RGB."""

from __future__ import annotations

import numpy as np
from PIL import Image

from bird_jax.data.info import DatasetInfo

DIGITS_IMAGE_SIZE = 32
DIGITS_SPLIT_SEED = 0  # Fixed, so valid/test stay the same whatever the training seed.
DIGITS_HOLDOUT_FRACTION = 0.1  # Of all images, for each of valid and test.


class ArraySource:
    """In-memory random-access source over uint8 images [N, H, W, 3] and integer labels [N]."""

    def __init__(self, name: str, images: np.ndarray, labels: np.ndarray):
        if len(images) != len(labels):
            raise ValueError(f"{name}: {len(images)} images but {len(labels)} labels.")
        self.name = name
        self.images = images
        self.labels = labels.astype(np.int32)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {"image": self.images[index], "label": self.labels[index]}

    def __repr__(self) -> str:  # Stable across runs: Grain checks it when restoring a state.
        return f"ArraySource(name={self.name!r}, num_records={len(self)})"


def _upscale_digits(images: np.ndarray, size: int) -> np.ndarray:
    """[N, 8, 8] float in 0..16 -> [N, size, size, 3] uint8."""
    grey = np.round(images * (255.0 / 16.0)).astype(np.uint8)
    resized = [
        np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
        for image in grey
    ]
    return np.repeat(np.stack(resized)[..., None], 3, axis=-1)


def load_digits() -> DatasetInfo:
    """Digits 0-9 (1797 images) split stratified and seeded into train (80%), valid, test (10%)."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    digits = sklearn_digits()
    images = _upscale_digits(digits.images, DIGITS_IMAGE_SIZE)
    labels = digits.target
    holdout = 2 * DIGITS_HOLDOUT_FRACTION
    train_x, rest_x, train_y, rest_y = train_test_split(
        images, labels, test_size=holdout, stratify=labels, random_state=DIGITS_SPLIT_SEED
    )
    valid_x, test_x, valid_y, test_y = train_test_split(
        rest_x, rest_y, test_size=0.5, stratify=rest_y, random_state=DIGITS_SPLIT_SEED
    )
    splits = {
        "train": ArraySource("digits/train", train_x, train_y),
        "valid": ArraySource("digits/valid", valid_x, valid_y),
        "test": ArraySource("digits/test", test_x, test_y),
    }
    return DatasetInfo(class_names=[str(d) for d in range(10)], splits=splits)
