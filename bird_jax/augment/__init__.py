"""Augmentation: ops composed from a pipeline string; host ops in Grain, the rest on the device.

data.train_pipeline and data.eval_pipeline (host ops only) share the op grammar and registry.
"""

from bird_jax.augment.device import DeviceAugment, normalize
from bird_jax.augment.evaluation import (
    apply_eval_ops,
    check_eval_keys,
    eval_pipeline,
    preprocess_for_eval,
    upgrade_eval_keys,
)
from bird_jax.augment.host import HostAugment, apply_host_ops
from bird_jax.augment.registry import (
    Op,
    Pipeline,
    parse_ops,
    parse_pipeline,
    register,
    registered_ops,
    train_pipeline,
)

__all__ = [
    "DeviceAugment",
    "HostAugment",
    "Op",
    "Pipeline",
    "apply_eval_ops",
    "apply_host_ops",
    "check_eval_keys",
    "eval_pipeline",
    "normalize",
    "parse_ops",
    "parse_pipeline",
    "preprocess_for_eval",
    "register",
    "registered_ops",
    "train_pipeline",
    "upgrade_eval_keys",
]
