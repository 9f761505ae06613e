"""What a config builds, shared by training, evaluation and prediction: model, optimiser, state."""

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import ml_collections
import optax

from bird_jax import augment, models, optim
from bird_jax.precision import get_policy
from bird_jax.train_step import TrainState, create_train_state, make_train_step


@dataclasses.dataclass(frozen=True)
class Experiment:
    """The pieces of one run, before any device placement."""

    model: nn.Module
    schedule: optax.Schedule
    tx: optax.GradientTransformation
    state: TrainState  # freshly initialised
    num_train_steps: int
    num_classes: int


def create_model(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
    """The registry model named by `config.model_name`, computing in the policy's dtype."""
    policy = get_policy(config.precision)
    return models.create_model(
        config.model_name,
        num_classes=num_classes,
        dtype=policy.compute_dtype,
        **config.model.to_dict(),
    )


def run_metadata(config: ml_collections.ConfigDict, class_names: list[str]) -> dict[str, Any]:
    """What a checkpoint must agree on to be restored into this config (JSON-normalised)."""
    meta = {
        "model_name": config.model_name,
        "model": config.model.to_dict(),
        "num_classes": len(class_names),
        "class_names": list(class_names),
    }
    return json.loads(json.dumps(meta))


def build(
    config: ml_collections.ConfigDict, class_names: list[str], num_train_examples: int
) -> Experiment:
    """Model, learning-rate schedule, optimiser and initial state for `config`."""
    if not class_names:
        raise ValueError("The dataset has no classes.")
    model = create_model(config, len(class_names))
    schedule = optim.learning_rate_schedule(config, num_train_examples)
    tx = optim.create_optimizer(config, schedule)
    state = create_train_state(
        model,
        tx,
        image_size=config.data.image_size,
        seed=config.seed,
        use_ema=config.ema_decay > 0,
    )
    return Experiment(
        model=model,
        schedule=schedule,
        tx=tx,
        state=state,
        num_train_steps=optim.total_steps(config, num_train_examples),
        num_classes=len(class_names),
    )


def pmapped_train_step(config: ml_collections.ConfigDict, exp: Experiment) -> Callable:
    """The shared pmapped train step with this config's device augmentation (data.train_pipeline),
    accumulation, label smoothing, EMA and precision."""
    return make_train_step(
        model=exp.model,
        tx=exp.tx,
        schedule=exp.schedule,
        augment=augment.DeviceAugment.from_pipeline(
            augment.train_pipeline(config.data), config.data
        ),
        num_classes=exp.num_classes,
        grad_accum_steps=config.grad_accum_steps,
        label_smoothing=config.label_smoothing,
        ema_decay=config.ema_decay,
        loss_scaling=get_policy(config.precision).loss_scaling,
    )


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a run saved in `workdir/config.json` (for evaluate and predict)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found: is {workdir!r} the --workdir of a bird_jax training run?"
        )
    with open(path) as f:
        return augment.upgrade_eval_keys(ml_collections.ConfigDict(json.load(f)))


def load_class_names(workdir: str) -> list[str]:
    """The label mapping a run saved in `workdir/labels.json`."""
    path = os.path.join(workdir, "labels.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: the run in {workdir!r} has no label mapping.")
    with open(path) as f:
        return json.load(f)
