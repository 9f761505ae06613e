"""The evaluation protocol of the distillation papers: fresh networks trained on the set, tested
on real images, mean +- std over runs.

As the official `evaluate_synset` (VICO-UoE/DatasetCondensation): SGD lr 0.01, momentum 0.9,
weight decay 5e-4, batch 256, per-image DSA, `epochs + 1` epochs (its `range(Epoch + 1)`), the
learning rate x0.1 after epoch epochs // 2 + 1 with a fresh optimiser (momentum reset, as its
code re-creates it). evaluation.optimizer='adam' is FRePo's evaluation instead (its
script/eval.py): Adam at evaluation.lr, warmed up linearly over evaluation.warmup_steps, then
cosine-decayed to 1% by the last step. Any registry model evaluates: ConvNet with the config's
architecture, and for cross-architecture tables the lightweight CNN, VGG16 with BatchNorm and
ConvNeXt-atto.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
import optax
from absl import logging

from bird_jax import console
from bird_jax.distill import nets
from bird_jax.models import create_model

PROGRESS_SECONDS = 30.0  # the least time between two progress lines of an evaluation run
OPTIMIZERS = ("sgd", "adam")  # evaluation.optimizer: the DC protocol's, FRePo's

# Cross-architecture names -> (registry name, fixed kwargs).
_EVAL_MODELS = {
    "lightweight_cnn": ("lightweight_cnn", {}),
    "vgg16_bn": ("vgg16", {"batch_norm": True}),
    "convnext_atto": ("convnext_atto", {}),
}


def eval_model(name: str, config: ml_collections.ConfigDict, num_classes: int):
    """The network `name` of evaluation.models: 'convnet' is the config's ConvNet."""
    if name == "convnet":
        return create_model("convnet", num_classes=num_classes, **config.model.to_dict())
    if name not in _EVAL_MODELS:
        known = ["convnet", *_EVAL_MODELS]
        raise ValueError(f"Unknown evaluation.models entry {name!r}; known: {known}.")
    registry_name, kwargs = _EVAL_MODELS[name]
    return create_model(registry_name, num_classes=num_classes, **kwargs)


def check_settings(config: ml_collections.ConfigDict) -> None:
    """ValueError naming the key if config.evaluation cannot run (checked before distilling)."""
    settings = config.evaluation
    for name in settings.models:
        eval_model(name, config, 2)
    if settings.optimizer not in OPTIMIZERS:
        raise ValueError(
            f"evaluation.optimizer must be one of {OPTIMIZERS}, got {settings.optimizer!r}."
        )
    if settings.warmup_steps < 0:
        raise ValueError(f"evaluation.warmup_steps must be >= 0, got {settings.warmup_steps}.")


def total_steps(settings: ml_collections.ConfigDict, set_size: int) -> int:
    """Optimiser steps of one run: `epochs + 1` epochs of ceil(set_size / batch_size) batches."""
    return (settings.epochs + 1) * math.ceil(set_size / settings.batch_size)


def adam_schedule(settings: ml_collections.ConfigDict, steps: int) -> optax.Schedule:
    """FRePo's evaluation schedule over `steps`: linear warmup from 0 over warmup_steps (at most
    half the steps), then cosine decay to 1% of evaluation.lr."""
    warmup = min(settings.warmup_steps, steps // 2)
    return optax.warmup_cosine_decay_schedule(
        0.0, settings.lr, warmup, steps, end_value=settings.lr * 0.01
    )


def optimizer(settings: ml_collections.ConfigDict, set_size: int) -> optax.GradientTransformation:
    """A run's optimiser on a set of `set_size` images: the DC protocol's SGD (train_network
    steps its rate) or FRePo's Adam on adam_schedule."""
    if settings.optimizer == "sgd":
        return nets.sgd(settings.lr, settings.momentum, settings.weight_decay)
    return optax.adam(adam_schedule(settings, total_steps(settings, set_size)))


def train_network(
    trainer: nets.NetTrainer,
    key: jax.Array,
    images,
    labels,
    settings,
    on_epoch: Callable[[int, jax.Array], None] | None = None,
) -> nets.NetState:
    """One protocol run: `settings.epochs + 1` epochs; with SGD, lr x0.1 (fresh momentum) past
    half; on_epoch(epochs done, last batch's loss) after each."""
    init_key, key = jax.random.split(key)
    state = trainer.init(init_key, images.shape[1:])
    for epoch in range(settings.epochs + 1):
        state, loss = trainer.train_epoch(
            state, images, labels, jax.random.fold_in(key, epoch), settings.batch_size
        )
        if settings.optimizer == "sgd" and epoch == settings.epochs // 2 + 1:
            state = trainer.with_learning_rate(state, settings.lr * 0.1)
        if on_epoch is not None:
            on_epoch(epoch + 1, loss)
    return state


def progress_reporter(
    label: str, epochs: int, min_seconds: float = PROGRESS_SECONDS, clock=time.perf_counter
) -> Callable[[int, jax.Array], None]:
    """An on_epoch for train_network that prints `label`'s progress (epochs/s, ETA) every tenth
    of its `epochs`, where at least `min_seconds` have passed since the last line: a run of a
    minute stays quiet, one of an hour shows where it is."""
    progress = console.Progress(0, epochs, clock=clock, unit="epoch")
    every = max(1, epochs // 10)
    last_line = clock()

    def report(done: int, loss: jax.Array) -> None:
        nonlocal last_line
        now = clock()
        if done == 1:  # the first epoch compiled: rates count from here
            progress.started(done)
        elif (done % every == 0 or done == epochs) and now - last_line >= min_seconds:
            last_line = now
            console.say(f"{label}: {progress.line(done, {'loss': float(loss)})}")

    return report


def evaluate_set(
    config: ml_collections.ConfigDict,
    images: np.ndarray,
    labels: np.ndarray,
    test: tuple[np.ndarray, np.ndarray],
    model_name: str,
    *,
    runs: int | None = None,
    seed: int = 0,
    learning_rate: float | None = None,
) -> dict:
    """Trains `runs` fresh `model_name` networks on (images, labels), tests each on `test`.
    `labels` are classes [N] or learned label vectors [N, C] (trained with FRePo's loss);
    `learning_rate`, a step size learned with the set (MTT), replaces evaluation.lr where
    evaluation.learned_lr (as MTT's evaluation)."""
    settings = copy.deepcopy(config.evaluation)
    if learning_rate is not None and settings.learned_lr:
        if not learning_rate > 0:
            raise ValueError(
                f"The set's learned step size is {learning_rate}: train it with "
                "--config.evaluation.learned_lr=False (evaluation.lr instead)."
            )
        settings.lr = learning_rate
    runs = runs or settings.runs
    num_classes = labels.shape[1] if labels.ndim == 2 else int(labels.max()) + 1
    model = eval_model(model_name, config, num_classes)
    trainer = nets.NetTrainer(model, optimizer(settings, len(labels)), settings.dsa_strategy)
    accuracies, seconds = [], []
    for run in range(runs):
        start = time.perf_counter()
        report = progress_reporter(f"{model_name} run {run + 1}/{runs}", settings.epochs + 1)
        state = train_network(
            trainer, jax.random.key(seed + run), images, labels, settings, on_epoch=report
        )
        accuracies.append(nets.accuracy(model, state, *test))
        seconds.append(time.perf_counter() - start)
        logging.info("%s run %d: test top-1 %.4f (%.1f s)", model_name, run, accuracies[-1],
                     seconds[-1])  # fmt: skip
    return {
        "model": model_name,
        "accuracies": accuracies,
        "mean": float(np.mean(accuracies)),
        "std": float(np.std(accuracies)),
        "runs": runs,
        "epochs": settings.epochs,
        "optimizer": settings.optimizer,
        "lr": settings.lr,
        "dsa_strategy": settings.dsa_strategy,
        "seconds_per_run": float(np.mean(seconds)),
    }
