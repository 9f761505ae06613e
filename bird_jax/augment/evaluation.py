"""Evaluation preprocessing: data.eval_pipeline, in the train grammar, host ops only.

    center_crop(crop_pct=0.875)                           the default: resize the shorter side to
                                                          image_size / 0.875, keep the centre
    center_crop(crop_pct=0.875, interpolation="bicubic")  ConvNeXt

Each op applies to every image (no `p` below 1) with one fixed generator, so evaluation and
prediction are deterministic and alike on any number of workers; the ops must end at
data.image_size. Configs from before data.eval_pipeline had data.eval_crop_pct and
data.interpolation: a run's saved config is translated (`upgrade_eval_keys`), a new config that
sets them is refused naming the new key (`check_eval_keys`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from bird_jax.augment.host import apply_host_ops
from bird_jax.augment.registry import HOST, Op, Pipeline, check_host_size, parse_ops

# The keys data.eval_pipeline replaced, with their values before it.
LEGACY_EVAL_KEYS = {"eval_crop_pct": 0.875, "interpolation": "bilinear"}
_EVAL_SEED = 0


def legacy_eval_pipeline(eval_crop_pct: float, interpolation: str) -> str:
    """The data.eval_pipeline that crops as data.eval_crop_pct and data.interpolation did."""
    return f'center_crop(crop_pct={float(eval_crop_pct)!r}, interpolation="{interpolation}")'


def _legacy_values(data_config) -> dict:
    return {key: data_config.get(key, default) for key, default in LEGACY_EVAL_KEYS.items()}


def check_eval_keys(data_config) -> None:
    """ValueError naming data.eval_pipeline if the config sets a key it replaced."""
    old = [f"data.{key}" for key in LEGACY_EVAL_KEYS if key in data_config]
    if old:
        spec = legacy_eval_pipeline(**_legacy_values(data_config))
        raise ValueError(
            f"{' and '.join(old)} {'is' if len(old) == 1 else 'are'} now data.eval_pipeline "
            f"(the op grammar of data.train_pipeline): remove {'it' if len(old) == 1 else 'them'} "
            f"and set data.eval_pipeline='{spec}' to keep these values."
        )


def upgrade_eval_keys(config):
    """A run config saved before data.eval_pipeline (config.json with data.eval_crop_pct and
    data.interpolation), changed in place to the data.eval_pipeline that crops the same way."""
    data_config = config.get("data")
    if data_config is None or "eval_pipeline" in data_config:
        return config
    if any(key in data_config for key in LEGACY_EVAL_KEYS):
        spec = legacy_eval_pipeline(**_legacy_values(data_config))
        for key in LEGACY_EVAL_KEYS:
            if key in data_config:
                del data_config[key]
        data_config.eval_pipeline = spec
    return config


@functools.lru_cache(maxsize=16)
def _parse_eval(spec: str | tuple[str, ...], image_size: int, mean: tuple, std: tuple) -> Pipeline:
    try:
        ops = parse_ops(spec, image_size=image_size, mean=mean, std=std)
        elsewhere = [f"{op} ({op.kind})" for op in ops if op.kind != HOST]
        if elsewhere:
            raise ValueError(
                f"it takes host ops only (per image, in the input workers), not {elsewhere}."
            )
        sometimes = [str(op) for op in ops if op.p < 1]
        if sometimes:
            raise ValueError(
                f"ops run on every image in evaluation: set p=1 in {sometimes} (flip_lr's "
                f"default p is 0.5) or leave them out."
            )
        check_host_size(ops, image_size)
    except ValueError as error:
        raise ValueError(f"data.eval_pipeline {spec!r}: {error}") from error
    return Pipeline(host=tuple(ops), device=(), batch=None)


def eval_pipeline(data_config) -> Pipeline:
    """The parsed data.eval_pipeline (host ops only); ValueError naming the key if it is bad."""
    check_eval_keys(data_config)
    spec = data_config.eval_pipeline
    return _parse_eval(
        spec if isinstance(spec, str) else tuple(spec),
        data_config.image_size,
        tuple(data_config.mean),
        tuple(data_config.std),
    )


def apply_eval_ops(ops: Sequence[Op], image: np.ndarray) -> np.ndarray:
    """The eval host ops on one uint8 [H, W, 3] image, with the fixed eval generator."""
    return apply_host_ops(tuple(ops), image, np.random.default_rng(_EVAL_SEED))


def preprocess_for_eval(image: np.ndarray, data_config) -> np.ndarray:
    """HxWx3 uint8 -> uint8 [image_size, image_size, 3], exactly as in evaluation."""
    return apply_eval_ops(eval_pipeline(data_config).host, image)
