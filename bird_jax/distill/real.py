"""The real images a distillation method reads: one split in memory, normalised, by class.

`load_real(data_config, split)` decodes a split of any bird_jax source (folder, TFDS, embedded)
through data.eval_pipeline (the distillation configs use `center_crop(crop_pct=1.0)`: the whole
image at image_size, the central square of a photo) and normalises it with data.mean/std, as the
papers learn synthetic images in the normalised space. Images are stored class-major and padded,
[classes, largest class, H, W, 3], so a jitted step samples every class's batch at once and the
classes can be split over devices.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from bird_jax.data.info import DatasetInfo
from bird_jax.data.pipeline import eval_loader
from bird_jax.data.sources import load_splits

_DECODE_BATCH = 512


@dataclasses.dataclass(frozen=True)
class RealData:
    """One split's images by class: `images` float32 [C, M, H, W, 3] (normalised; rows past
    `counts[c]` are zero padding), `counts` int32 [C], and the dataset's names and statistics."""

    images: np.ndarray
    counts: np.ndarray
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[2:])

    def flat(self) -> tuple[np.ndarray, np.ndarray]:
        """All real images [N, H, W, 3] and labels [N], class by class (no padding)."""
        images = np.concatenate([self.images[c, :n] for c, n in enumerate(self.counts)])
        labels = np.repeat(np.arange(self.num_classes, dtype=np.int32), self.counts)
        return images, labels

    def mapped(self, function) -> RealData:
        """The same classes with every image through `function` ([N, H, W, 3] -> same shape);
        the padding stays zero."""
        images, labels = self.flat()
        stacked, _ = by_class(function(images), labels, self.num_classes)
        return dataclasses.replace(self, images=stacked)


def check_images_per_class(counts: np.ndarray, class_names: list[str], ipc: int) -> None:
    """ValueError if a class has fewer than `ipc` real images (a set must be class-balanced)."""
    smallest = int(np.argmin(counts))
    if counts[smallest] < ipc:
        raise ValueError(
            f"distill.ipc={ipc} is more than class {class_names[smallest]!r} has "
            f"({counts[smallest]} images): lower distill.ipc or drop the class (data.classes, "
            "data.min_images_per_class)."
        )


def split_counts(info: DatasetInfo, split: str) -> np.ndarray:
    """Images per class in `split`, from the labels alone (nothing decoded)."""
    return np.bincount(info.source(split).labels, minlength=info.num_classes)


def _decode(info: DatasetInfo, data_config, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, S, S, 3] and labels of `split` through data.eval_pipeline."""
    batches = list(eval_loader(info.source(split), data_config, _DECODE_BATCH))
    return (
        np.concatenate([batch["image"] for batch in batches]),
        np.concatenate([batch["label"] for batch in batches]),
    )


def normalise(images: np.ndarray, mean, std) -> np.ndarray:
    """uint8 [..., 3] -> float32 (x / 255 - mean) / std."""
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    return (images.astype(np.float32) / 255.0 - mean) / std


def denormalise(images: np.ndarray, mean, std) -> np.ndarray:
    """Normalised float images -> uint8 (rounded, clipped to 0..255)."""
    pixels = np.asarray(images, np.float32) * np.asarray(std, np.float32) + np.asarray(mean)
    return np.clip(np.round(pixels * 255.0), 0, 255).astype(np.uint8)


def by_class(
    images: np.ndarray, labels: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """[N, ...] images and labels -> class-major [C, largest class, ...] (zero padded), counts."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.int32)
    stacked = np.zeros((num_classes, counts.max(), *images.shape[1:]), images.dtype)
    for c in range(num_classes):
        members = images[labels == c]
        stacked[c, : len(members)] = members
    return stacked, counts


def load_images(data_config, split: str, info: DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    """Split `split` of `info`, decoded and normalised: images [N, S, S, 3] and labels [N], in
    the source's order (what evaluation reads)."""
    uint8_images, labels = _decode(info, data_config, split)
    logging.info("Loaded %d %s images of %d classes.", len(labels), split, info.num_classes)
    return normalise(uint8_images, data_config.mean, data_config.std), labels


def load_real(data_config, split: str, info: DatasetInfo | None = None) -> RealData:
    """Split `split` of config.data, decoded, normalised and stacked by class."""
    info = info or load_splits(data_config)
    images, counts = by_class(*load_images(data_config, split, info), info.num_classes)
    return RealData(
        images, counts, list(info.class_names), tuple(data_config.mean), tuple(data_config.std)
    )


def sample_per_class(
    key: jax.Array, images: jax.Array, counts: jax.Array, class_ids: jax.Array, n: int
) -> jax.Array:
    """n distinct real images of every class: [C, M, H, W, 3] -> [C, n, H, W, 3] (jittable).

    Class c draws from fold_in(key, class_ids[c]), so splitting the classes over devices draws
    the same images. n must not exceed the smallest count.
    """

    def one_class(class_id, class_images, count):
        scores = jax.random.uniform(jax.random.fold_in(key, class_id), (class_images.shape[0],))
        scores = jnp.where(jnp.arange(class_images.shape[0]) < count, scores, 2.0)
        return class_images[jnp.argsort(scores)[:n]]

    return jax.vmap(one_class)(class_ids, images, counts)
