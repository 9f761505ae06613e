"""RandAugment driven by timm policy strings such as ConvNeXt's 'rand-m9-mstd0.5-inc1'.

Semantics follow timm's `rand_augment_transform`. Per image, `n` ops are drawn uniformly with
replacement from 15 ops; each applies with probability `p` at a magnitude drawn around `m`
(Gaussian with std `mstd`; uniform in [0, m] when mstd > 100), clipped to [0, mmax]. A level of
m / 10 sets each op's strength. Signed ops (rotate up to 30 degrees, shear up to 0.3, translate up
to 45% of the side, the 'increasing' enhance factors 1 +- 0.9 m / 10) get a random sign. Geometric
ops fill with `fill` (timm uses the ImageNet mean) and resample bilinear or bicubic at random.
All randomness comes from the numpy Generator, so a seed fixes the result. Ops run in PIL.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from bird_jax.augment.crops import RESAMPLING
from bird_jax.augment.host_ops import rgb_uint8
from bird_jax.augment.registry import HOST, register

IMAGENET_FILL = (124, 116, 104)  # round(255 * ImageNet mean), timm's img_mean
_LEVEL_DENOM = 10.0
_UNIFORM_MSTD_ABOVE = 100.0
_INTERPOLATIONS = ("random", *RESAMPLING)

Level = Callable[[float, np.random.Generator], float]


def _signed(scale: float) -> Level:
    """Level m -> m / 10 * scale with a random sign."""

    def level(magnitude: float, rng: np.random.Generator) -> float:
        value = magnitude / _LEVEL_DENOM * scale
        return -value if rng.random() < 0.5 else value

    return level


def _enhance(magnitude: float, rng: np.random.Generator) -> float:
    """Enhance factor in [0.1, 1.9], growing with m (1.0 is no change, reached near m = 5)."""
    del rng
    return magnitude / _LEVEL_DENOM * 1.8 + 0.1


def _enhance_increasing(magnitude: float, rng: np.random.Generator) -> float:
    """Enhance factor 1 +- 0.9 m / 10 (at least 0.1): stronger in either direction as m grows."""
    return max(0.1, 1.0 + _signed(0.9)(magnitude, rng))


def _posterize_bits(magnitude: float, rng: np.random.Generator) -> float:
    """Bits kept: 0..4, growing with m (weaker as m grows)."""
    del rng
    return int(magnitude / _LEVEL_DENOM * 4)


def _posterize_increasing(magnitude: float, rng: np.random.Generator) -> float:
    """Bits kept: 4 down to 0 as m grows."""
    return 4 - _posterize_bits(magnitude, rng)


def _solarize_threshold(magnitude: float, rng: np.random.Generator) -> float:
    """Threshold 0..256, growing with m (weaker as m grows)."""
    del rng
    return int(magnitude / _LEVEL_DENOM * 256)


def _solarize_increasing(magnitude: float, rng: np.random.Generator) -> float:
    """Threshold 256 down to 0 as m grows."""
    return 256 - _solarize_threshold(magnitude, rng)


def _solarize_add_amount(magnitude: float, rng: np.random.Generator) -> float:
    """Amount added below 128: 0..110."""
    del rng
    return int(magnitude / _LEVEL_DENOM * 110)


def _posterize(image: Image.Image, bits: float) -> Image.Image:
    """Keeps `bits` (clipped to 0..8; 0 gives black, which Pillow's posterize refuses) bits."""
    mask = (0xFF << (8 - int(min(max(bits, 0), 8)))) & 0xFF
    return image.point([i & mask for i in range(256)] * 3)


def _solarize_add(image: Image.Image, amount: float) -> Image.Image:
    lut = [min(255, i + int(amount)) if i < 128 else i for i in range(256)]
    return image.point(lut * 3)


def _enhance_with(kind: type, image: Image.Image, factor: float) -> Image.Image:
    return kind(image).enhance(factor)


def _affine(image: Image.Image, matrix, resample: int, fill: tuple) -> Image.Image:
    """Output pixel (x, y) samples input (a x + b y + c, d x + e y + f)."""
    return image.transform(
        image.size, Image.Transform.AFFINE, matrix, resample=resample, fillcolor=fill
    )


def _rotate(image: Image.Image, degrees: float, resample: int, fill: tuple) -> Image.Image:
    return image.rotate(degrees, resample=resample, fillcolor=fill)


def _shear_x(image: Image.Image, factor: float, resample: int, fill: tuple) -> Image.Image:
    return _affine(image, (1, factor, 0, 0, 1, 0), resample, fill)


def _shear_y(image: Image.Image, factor: float, resample: int, fill: tuple) -> Image.Image:
    return _affine(image, (1, 0, 0, factor, 1, 0), resample, fill)


def _translate_x(image: Image.Image, fraction: float, resample: int, fill: tuple) -> Image.Image:
    return _affine(image, (1, 0, fraction * image.width, 0, 1, 0), resample, fill)


def _translate_y(image: Image.Image, fraction: float, resample: int, fill: tuple) -> Image.Image:
    return _affine(image, (1, 0, 0, 0, 1, fraction * image.height), resample, fill)


@dataclasses.dataclass(frozen=True)
class _Op:
    """apply(image[, level][, resample, fill]); level draws the op's argument from m."""

    apply: Callable[..., Image.Image]
    level: Level | None = None
    geometric: bool = False


_COMMON = {
    "AutoContrast": _Op(ImageOps.autocontrast),
    "Equalize": _Op(ImageOps.equalize),
    "Invert": _Op(ImageOps.invert),
    "Rotate": _Op(_rotate, _signed(30.0), geometric=True),
    "SolarizeAdd": _Op(_solarize_add, _solarize_add_amount),
    "ShearX": _Op(_shear_x, _signed(0.3), geometric=True),
    "ShearY": _Op(_shear_y, _signed(0.3), geometric=True),
    "TranslateXRel": _Op(_translate_x, _signed(0.45), geometric=True),
    "TranslateYRel": _Op(_translate_y, _signed(0.45), geometric=True),
}
_ENHANCERS = {
    "Color": ImageEnhance.Color,
    "Contrast": ImageEnhance.Contrast,
    "Brightness": ImageEnhance.Brightness,
    "Sharpness": ImageEnhance.Sharpness,
}
# timm's _RAND_TRANSFORMS (inc0) and _RAND_INCREASING_TRANSFORMS (inc1): 15 ops each.
_OPS_BY_INCREASING = {
    False: {
        **_COMMON,
        "Posterize": _Op(_posterize, _posterize_bits),
        "Solarize": _Op(ImageOps.solarize, _solarize_threshold),
        **{
            name: _Op(functools.partial(_enhance_with, kind), _enhance)
            for name, kind in _ENHANCERS.items()
        },
    },
    True: {
        **_COMMON,
        "PosterizeIncreasing": _Op(_posterize, _posterize_increasing),
        "SolarizeIncreasing": _Op(ImageOps.solarize, _solarize_increasing),
        **{
            f"{name}Increasing": _Op(functools.partial(_enhance_with, kind), _enhance_increasing)
            for name, kind in _ENHANCERS.items()
        },
    },
}

_SECTION = re.compile(r"([a-z]+)(\d.*)")
_ALLOWED = "m<int>, n<int>, mstd<float>, mmax<int>, inc<0|1>, p<float>"


def _number(key: str, text: str, kind: type, low: float, high: float = math.inf):
    try:
        value = kind(text)
    except ValueError as error:
        message = f"RandAugment section {key!r} must be of type {kind.__name__}, got {text!r}."
        raise ValueError(message) from error
    if not low <= value <= high:
        raise ValueError(f"RandAugment section {key!r} must be in [{low}, {high}], got {value}.")
    return value


def parse_policy(policy: str) -> dict:
    """Parses a timm policy 'rand-m9-mstd0.5-inc1' into RandAugment settings.

    Sections after 'rand', any order: m (magnitude, default 10), n (ops per image, default 2),
    mstd (magnitude noise std, default 0; > 100 means uniform in [0, m]), mmax (magnitude clip,
    default 10), inc (1: the 'increasing' op set, default 0), p (per-op probability, default 0.5).
    """
    head, *sections = policy.split("-")
    if head != "rand":
        raise ValueError(f"RandAugment policy must start with 'rand', got {policy!r}.")
    settings = {
        "magnitude": 10,
        "num_layers": 2,
        "magnitude_std": 0.0,
        "magnitude_max": 10,
        "increasing": False,
        "prob": 0.5,
    }
    seen = set()
    for section in sections:
        match = _SECTION.fullmatch(section)
        if match is None:
            raise ValueError(
                f"Malformed RandAugment section {section!r} in {policy!r}; {_ALLOWED}."
            )
        key, text = match.groups()
        if key in seen:
            raise ValueError(f"RandAugment section {key!r} given twice in {policy!r}.")
        seen.add(key)
        if key == "m":
            settings["magnitude"] = _number(key, text, int, 0)
        elif key == "n":
            settings["num_layers"] = _number(key, text, int, 1)
        elif key == "mstd":
            std = _number(key, text, float, 0.0)
            settings["magnitude_std"] = math.inf if std > _UNIFORM_MSTD_ABOVE else std
        elif key == "mmax":
            settings["magnitude_max"] = _number(key, text, int, 1)
        elif key == "inc":
            settings["increasing"] = bool(_number(key, text, int, 0, 1))
        elif key == "p":
            settings["prob"] = _number(key, text, float, 0.0, 1.0)
        else:
            raise ValueError(f"Unknown RandAugment section {section!r} in {policy!r}; {_ALLOWED}.")
    return settings


@dataclasses.dataclass(frozen=True)
class _Plan:
    ops: tuple[_Op, ...]
    magnitude: int
    num_layers: int
    magnitude_std: float
    magnitude_max: int
    prob: float


@functools.lru_cache(maxsize=32)
def _plan(policy: str) -> _Plan:
    settings = parse_policy(policy)
    ops = tuple(_OPS_BY_INCREASING[settings.pop("increasing")].values())
    return _Plan(ops=ops, **settings)


def _magnitude(plan: _Plan, rng: np.random.Generator) -> float:
    magnitude = float(plan.magnitude)
    if plan.magnitude_std == math.inf:
        magnitude = rng.uniform(0.0, magnitude)
    elif plan.magnitude_std > 0:
        magnitude = rng.normal(magnitude, plan.magnitude_std)
    return min(max(magnitude, 0.0), plan.magnitude_max)


def _check_fill(fill) -> tuple[int, int, int]:
    valid = (
        isinstance(fill, tuple | list)
        and len(fill) == 3
        and all(isinstance(v, int | np.integer) and 0 <= v <= 255 for v in fill)
    )
    if not valid:
        raise ValueError(f"fill must be 3 integers in [0, 255], got {fill!r}.")
    return tuple(int(v) for v in fill)


@register(HOST)
def randaugment(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    policy: str = "rand-m9-mstd0.5-inc1",
    fill: tuple[int, int, int] = IMAGENET_FILL,
    interpolation: str = "random",
) -> np.ndarray:
    """RandAugment per a timm policy string; geometric ops fill with `fill` (RGB 0..255).

    interpolation: 'random' (bilinear or bicubic per op, as timm by default), 'bilinear' or
    'bicubic' (timm's create_transform passes the train interpolation, bicubic for ConvNeXt).
    """
    plan = _plan(policy)
    fill = _check_fill(fill)
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {_INTERPOLATIONS}, got {interpolation!r}.")
    resamples = (
        tuple(RESAMPLING.values()) if interpolation == "random" else (RESAMPLING[interpolation],)
    )
    result = Image.fromarray(rgb_uint8(image))
    for index in rng.integers(0, len(plan.ops), size=plan.num_layers):
        op = plan.ops[index]
        if rng.random() >= plan.prob:
            continue
        args = () if op.level is None else (op.level(_magnitude(plan, rng), rng),)
        if op.geometric:
            args = (*args, resamples[int(rng.integers(len(resamples)))], fill)
        result = op.apply(result, *args)
    return np.array(result)  # writable, unlike np.asarray of a PIL image
