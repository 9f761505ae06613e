"""Fine-tuning recipe: per-layer learning-rate multipliers and frozen layers, from config.finetune.

Layers are counted the same way for every family, from the top-level entries of `params` in
creation (forward) order: everything before the first residual block (a top-level module whose
name contains "block") is layer 0, block i is layer i + 1 (modules between blocks, such as
ConvNeXt's downsampling, join the block after them), and what follows the last block is layer
L + 1 with the head. Families without blocks (VGG, the lightweight CNN) count each top-level
layer that is not a norm. Layer-wise decay (ConvNeXt/BEiT fine-tuning) scales layer i's learning
rate by layer_decay ** (L + 1 - i); the head's is further scaled by head_lr_multiplier.
"""

import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
import optax

HEAD = "head"
_NORM = re.compile(r"(^|_)(bn|norm|ln)\d*($|_)")


def layer_of_each_entry(names: Sequence[str]) -> dict[str, int]:
    """Top-level params names (in creation order) -> layer index; the head is the last layer."""
    body = [name for name in names if name != HEAD]
    if any("block" in name for name in body):
        blocks = [name for name in body if "block" in name]
        last_block = body.index(blocks[-1])
        layers, depth = {}, 0
        pending = []  # entries waiting for the block after them
        for position, name in enumerate(body):
            if position > last_block:
                layers[name] = len(blocks) + 1
            elif "block" in name:
                depth += 1
                layers.update({entry: depth for entry in [*pending, name]})
                pending = []
            elif depth == 0:
                layers[name] = 0
            else:
                pending.append(name)
        num_layers = len(blocks) + 2
    else:
        layers, depth = {}, -1
        for name in body:
            if not (_NORM.search(name) and depth >= 0):
                depth += 1
            layers[name] = depth
        num_layers = depth + 2
    return {**layers, HEAD: num_layers - 1}


def learning_rate_multipliers(
    names: Sequence[str], finetune: ml_collections.ConfigDict
) -> dict[str, float]:
    """Top-level params name -> learning-rate multiplier; 0.0 for a frozen entry.

    finetune.freeze_layers = k freezes layers 0..k-1 (-1: everything but the head itself, a
    linear probe); finetune.layer_decay < 1 decays the rate towards the input; head_lr_multiplier
    scales the head's.
    """
    layers = layer_of_each_entry(names)
    head_layer = layers[HEAD]
    multipliers = {}
    for name, layer in layers.items():
        scale = finetune.layer_decay ** (head_layer - layer)
        if name == HEAD:
            scale *= finetune.head_lr_multiplier
        probe_frozen = finetune.freeze_layers < 0 and name != HEAD
        frozen = probe_frozen or layer < finetune.freeze_layers
        multipliers[name] = 0.0 if frozen else float(scale)
    return multipliers


def scale_by_multipliers(multipliers: Mapping[str, float]) -> optax.GradientTransformation:
    """Multiplies each update by its top-level entry's multiplier (static numbers)."""

    def scale(updates: Any) -> Any:
        return {name: _scaled(sub, multipliers[name]) for name, sub in updates.items()}

    return optax.stateless(lambda updates, params=None: scale(updates))


def _scaled(tree: Any, multiplier: float) -> Any:
    return jax.tree.map(lambda u: u * multiplier, tree)


def trainable_labels(multipliers: Mapping[str, float]):
    """optax.multi_transform labels: 'frozen' for entries with multiplier 0, else 'trained'."""

    def labels(params: Any) -> dict[str, Any]:
        label = {name: "frozen" if m == 0.0 else "trained" for name, m in multipliers.items()}
        return {name: jax.tree.map(lambda _, n=name: label[n], sub) for name, sub in params.items()}

    return labels


BATCH_NORM_MODES = ("update", "frozen")


def validate(finetune: ml_collections.ConfigDict) -> None:
    """Raises ValueError (one line, naming the key) for settings out of range."""
    if not 0.0 < finetune.layer_decay <= 1.0:
        raise ValueError(f"finetune.layer_decay must be in (0, 1], got {finetune.layer_decay}.")
    if finetune.freeze_layers < -1:
        raise ValueError(
            f"finetune.freeze_layers must be >= -1 (-1: all but the head), got "
            f"{finetune.freeze_layers}."
        )
    if finetune.head_lr_multiplier <= 0:
        raise ValueError(
            f"finetune.head_lr_multiplier must be > 0, got {finetune.head_lr_multiplier}."
        )
    if finetune.batch_norm not in BATCH_NORM_MODES:
        raise ValueError(
            f"finetune.batch_norm must be one of {BATCH_NORM_MODES}, got {finetune.batch_norm!r}."
        )


def is_active(finetune: ml_collections.ConfigDict) -> bool:
    """Whether config.finetune changes anything from plain training."""
    return (
        finetune.layer_decay != 1.0
        or finetune.freeze_layers != 0
        or finetune.head_lr_multiplier != 1.0
    )
