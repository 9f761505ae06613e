"""Evaluation: a pmapped eval step, the pass over a split, and the report it writes."""

import functools
import os
from collections.abc import Callable, Iterable

import flax.jax_utils
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from bird_jax import augment, data, experiment, reporting
from bird_jax.checkpoints import RunCheckpoints
from bird_jax.metrics import EvalMetrics, psum_metrics
from bird_jax.train_step import AXIS, replicate
from bird_jax.writers import create_writer, metric_writers


def eval_step(
    variables: dict,
    batch: dict[str, jax.Array],
    *,
    model: nn.Module,
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
):
    """Metrics and confusion counts of one padded uint8 batch, summed over every device."""
    images = augment.normalize(batch["image"], mean, std)
    logits = model.apply(variables, images, train=False).astype(jnp.float32)
    labels, mask = batch["label"], batch["mask"]
    metrics = EvalMetrics.single_from_model_output(
        loss=optax.softmax_cross_entropy_with_integer_labels(logits, labels),
        logits=logits,
        labels=labels,
        mask=mask,
    )
    predictions = logits.argmax(axis=-1)
    confusion = jnp.einsum(
        "n,ni,nj->ij",
        mask,
        jax.nn.one_hot(labels, num_classes),
        jax.nn.one_hot(predictions, num_classes),
    )
    return psum_metrics(metrics, AXIS), jax.lax.psum(confusion, AXIS)


def make_eval_step(model: nn.Module, num_classes: int, data_config) -> Callable:
    """The pmapped eval step, normalising with data_config.mean/std."""
    step = functools.partial(
        eval_step,
        model=model,
        num_classes=num_classes,
        mean=tuple(data_config.mean),
        std=tuple(data_config.std),
    )
    return jax.pmap(step, axis_name=AXIS)


def evaluate(
    p_eval_step: Callable, variables: dict, batches: Iterable[dict]
) -> tuple[dict[str, float], np.ndarray]:
    """One pass over `batches`: (metrics dict, confusion matrix [true, predicted])."""
    total, confusion = None, None
    for batch in batches:
        metrics, counts = flax.jax_utils.unreplicate(p_eval_step(variables, batch))
        total = metrics if total is None else total.merge(metrics)
        confusion = counts if confusion is None else confusion + counts
    if total is None:
        raise ValueError("The evaluation split is empty.")
    results = {k: float(v) for k, v in total.compute().items()}
    return results, np.rint(np.asarray(confusion)).astype(np.int64)


def evaluate_and_report(
    p_eval_step: Callable,
    variables: dict,
    info: data.DatasetInfo,
    config: ml_collections.ConfigDict,
    split: str,
    *,
    step: int,
    workdir: str,
    writer: metric_writers.MetricWriter,
) -> dict[str, float]:
    """Evaluates `split` and adds macro-F1; process 0 writes TensorBoard summaries and reports.

    The report files are `eval_<split>.json` and `confusion_<split>.csv`/`.png` in the workdir.
    """
    batches = data.eval_batches(info, config.data, split, global_batch_size=config.eval_batch_size)
    results, confusion = evaluate(p_eval_step, variables, batches)
    report = reporting.classification_report(confusion, info.class_names)
    results["macro_f1"] = float(report["macro_f1"])
    if jax.process_index() == 0:
        image = reporting.confusion_matrix_image(confusion, info.class_names)
        writer.write_scalars(step, {f"{split}/{k}": v for k, v in results.items()})
        writer.write_images(step, {f"{split}/confusion_matrix": image[None]})
        reporting.write_evaluation(workdir, split, report, confusion, info.class_names)
    return results


def evaluate_checkpoint(
    config: ml_collections.ConfigDict, workdir: str, *, split: str, which: str = "latest"
) -> dict[str, float]:
    """Restores the latest (or best) checkpoint of `workdir` and evaluates `split`."""
    info = data.load_splits(config.data)
    exp = experiment.build(config, info.class_names, info.num_examples(config.data.train_split))
    ckpts = RunCheckpoints(workdir, metadata=experiment.run_metadata(config, info.class_names))
    restored = ckpts.restore(exp.state, which=which)
    ckpts.close()
    if restored is None:
        raise FileNotFoundError(
            f"No {which} checkpoint in {workdir}: train first with --mode=train."
        )
    state = restored[0]
    writer = create_writer(
        os.path.join(workdir, f"eval_{split}"), just_logging=jax.process_index() > 0
    )
    results = evaluate_and_report(
        make_eval_step(exp.model, len(info.class_names), config.data),
        replicate(state.eval_variables(config.eval_with_ema)),
        info,
        config,
        split,
        step=int(state.step),
        workdir=workdir,
        writer=writer,
    )
    writer.close()
    return results
