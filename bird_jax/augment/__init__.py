"""Augmentation: ops composed from a pipeline string; host ops in Grain, the rest on the device."""

from bird_jax.augment.device import DeviceAugment, normalize
from bird_jax.augment.host import HostAugment, apply_host_ops
from bird_jax.augment.registry import (
    Op,
    Pipeline,
    parse_ops,
    parse_pipeline,
    registered_ops,
    train_pipeline,
)

__all__ = [
    "DeviceAugment",
    "HostAugment",
    "Op",
    "Pipeline",
    "apply_host_ops",
    "normalize",
    "parse_ops",
    "parse_pipeline",
    "registered_ops",
    "train_pipeline",
]
