"""Per-image Grain transforms on records {'image': uint8 [H, W, 3], 'label': int32}.

Train: random-resized-crop, horizontal flip, normalize. Eval: resize the shorter side to
image_size / eval_crop_pct and center-crop image_size (one PIL resize of the central box),
normalize. Random transforms draw from the per-record generator Grain derives from the seed
and the record's position, so augmentation is reproducible.
"""

from __future__ import annotations

import dataclasses

import grain
import numpy as np
from PIL import Image

RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
_CROP_ATTEMPTS = 10

Box = tuple[float, float, float, float]  # left, top, right, bottom in pixels


def _resampling(data_config) -> Image.Resampling:
    name = data_config.get("interpolation", "bilinear")
    if name not in RESAMPLING:
        raise ValueError(f"Unknown interpolation {name!r}; choose one of {sorted(RESAMPLING)}.")
    return RESAMPLING[name]


def check_data_config(data_config) -> None:
    """ValueError naming the key if an augmentation setting is out of range."""
    low, high = data_config.crop_scale
    if not 0 < low <= high <= 1:
        raise ValueError(f"data.crop_scale must satisfy 0 < low <= high <= 1, got {(low, high)}.")
    low, high = data_config.crop_ratio
    if not 0 < low <= high:
        raise ValueError(f"data.crop_ratio must satisfy 0 < low <= high, got {(low, high)}.")
    if not 0 < data_config.eval_crop_pct <= 1:
        raise ValueError(f"data.eval_crop_pct must be in (0, 1], got {data_config.eval_crop_pct}.")
    if data_config.image_size <= 0:
        raise ValueError(f"data.image_size must be positive, got {data_config.image_size}.")
    if len(data_config.mean) != 3 or len(data_config.std) != 3 or min(data_config.std) <= 0:
        raise ValueError("data.mean and data.std need 3 values each, std positive.")
    _resampling(data_config)


def resize_box(image: np.ndarray, box: Box, size: int, resample: int) -> np.ndarray:
    """Crops `box` (sub-pixel) out of `image` and resizes it to size x size in one PIL call."""
    return np.asarray(Image.fromarray(image).resize((size, size), resample, box=box))


def random_crop_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    rng: np.random.Generator,
) -> Box:
    """Inception-style crop: area fraction in `scale`, aspect (w/h) log-uniform in `ratio`.

    Tries a few samples; if none fits, takes the largest central crop with a valid aspect.
    """
    area = height * width * rng.uniform(*scale, size=_CROP_ATTEMPTS)
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]), size=_CROP_ATTEMPTS))
    crop_widths, crop_heights = np.sqrt(area * aspect), np.sqrt(area / aspect)
    fits = (crop_widths <= width) & (crop_heights <= height)
    if fits.any():
        first = int(np.argmax(fits))
        crop_width, crop_height = crop_widths[first], crop_heights[first]
        left = rng.uniform(0, width - crop_width)
        top = rng.uniform(0, height - crop_height)
        return left, top, left + crop_width, top + crop_height
    aspect = np.clip(width / height, *ratio)
    crop_width, crop_height = min(width, height * aspect), min(height, width / aspect)
    left, top = (width - crop_width) / 2, (height - crop_height) / 2
    return left, top, left + crop_width, top + crop_height


def center_crop_box(height: int, width: int, crop_pct: float) -> Box:
    """The central square that resizing the shorter side to size/crop_pct then cropping keeps."""
    side = min(height, width) * crop_pct
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


def normalize(image: np.ndarray, mean, std) -> np.ndarray:
    """uint8 [..., 3] -> float32 (image / 255 - mean) / std."""
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    return (image.astype(np.float32) / 255.0 - mean) / std


def preprocess_for_eval(image: np.ndarray, data_config) -> np.ndarray:
    """HxWx3 uint8 -> normalized float32 [image_size, image_size, 3], exactly as in evaluation."""
    height, width = image.shape[:2]
    box = center_crop_box(height, width, data_config.eval_crop_pct)
    resized = resize_box(image, box, data_config.image_size, _resampling(data_config))
    return normalize(resized, data_config.mean, data_config.std)


class DropUndecodable(grain.transforms.Filter):
    """Drops records whose file failed to decode (the source logged a warning)."""

    def filter(self, record: dict) -> bool:
        return record["image"] is not None


@dataclasses.dataclass(frozen=True)
class RandomResizedCrop(grain.transforms.RandomMap):
    size: int
    scale: tuple[float, float]
    ratio: tuple[float, float]
    resample: int

    def random_map(self, record: dict, rng: np.random.Generator) -> dict:
        height, width = record["image"].shape[:2]
        box = random_crop_box(height, width, self.scale, self.ratio, rng)
        return {**record, "image": resize_box(record["image"], box, self.size, self.resample)}


class RandomFlip(grain.transforms.RandomMap):
    """Mirrors left-right with probability 1/2."""

    def random_map(self, record: dict, rng: np.random.Generator) -> dict:
        if rng.random() < 0.5:
            return {**record, "image": np.ascontiguousarray(record["image"][:, ::-1])}
        return record


@dataclasses.dataclass(frozen=True)
class ResizeCenterCrop(grain.transforms.Map):
    size: int
    crop_pct: float
    resample: int

    def map(self, record: dict) -> dict:
        height, width = record["image"].shape[:2]
        box = center_crop_box(height, width, self.crop_pct)
        return {**record, "image": resize_box(record["image"], box, self.size, self.resample)}


@dataclasses.dataclass(frozen=True)
class Normalize(grain.transforms.Map):
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def map(self, record: dict) -> dict:
        return {**record, "image": normalize(record["image"], self.mean, self.std)}


def _normalize(data_config) -> Normalize:
    return Normalize(tuple(data_config.mean), tuple(data_config.std))


def train_transforms(data_config) -> list:
    """Decode guard, random-resized-crop, optional flip, normalize."""
    check_data_config(data_config)
    crop = RandomResizedCrop(
        size=data_config.image_size,
        scale=tuple(data_config.crop_scale),
        ratio=tuple(data_config.crop_ratio),
        resample=_resampling(data_config),
    )
    flip = [RandomFlip()] if data_config.flip else []
    return [DropUndecodable(), crop, *flip, _normalize(data_config)]


def eval_transforms(data_config) -> list:
    """Decode guard, resize + center crop, normalize."""
    check_data_config(data_config)
    crop = ResizeCenterCrop(
        size=data_config.image_size,
        crop_pct=data_config.eval_crop_pct,
        resample=_resampling(data_config),
    )
    return [DropUndecodable(), crop, _normalize(data_config)]
