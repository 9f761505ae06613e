"""Evaluation: a pmapped eval step, the pass over a split, and the report it writes."""

import functools
from collections.abc import Callable, Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from bird_jax import augment, data, experiment, figures, scores
from bird_jax.checkpoints import LATEST, RunCheckpoints
from bird_jax.devices import AXIS, replicate, unreplicate
from bird_jax.metrics import EvalMetrics, psum_metrics
from bird_jax.workdir import Workdir, checkpoint_metadata
from bird_jax.writers import create_writer, metric_writers


def confusion_counts(
    labels: jax.Array, predictions: jax.Array, mask: jax.Array, num_classes: int
) -> jax.Array:
    """[true, predicted] counts of the examples with mask 1 (padding has mask 0)."""
    return jnp.einsum(
        "n,ni,nj->ij",
        mask,
        jax.nn.one_hot(labels, num_classes),
        jax.nn.one_hot(predictions, num_classes),
    )


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
    confusion = confusion_counts(labels, logits.argmax(axis=-1), mask, num_classes)
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
        metrics, counts = unreplicate(p_eval_step(variables, batch))
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
    workdir: Workdir,
    writer: metric_writers.MetricWriter,
) -> dict[str, float]:
    """Evaluates `split` and adds macro-F1; process 0 writes TensorBoard summaries and the
    workdir's eval_<split>.json and confusion_<split>.csv/.png."""
    batches = data.eval_batches(info, config.data, split, global_batch_size=config.eval_batch_size)
    results, confusion = evaluate(p_eval_step, variables, batches)
    report = scores.classification_report(confusion, info.class_names)
    results["macro_f1"] = float(report["macro_f1"])
    if jax.process_index() == 0:
        title = f"{split} at step {step}"
        image = figures.confusion_matrix_image(confusion, info.class_names, title)
        writer.write_scalars(step, {f"{split}/{k}": v for k, v in results.items()})
        writer.write_images(step, {f"{split}/confusion_matrix": image[None]})
        workdir.write_evaluation(split, report, confusion, info.class_names, title)
    return results


def evaluate_checkpoint(
    config: ml_collections.ConfigDict, workdir: str | Workdir, *, split: str, which: str = LATEST
) -> dict[str, float]:
    """Restores the latest (or best) checkpoint's variables and evaluates `split`."""
    workdir = Workdir(workdir)
    info = data.load_splits(config.data)
    model = experiment.create_model(config, info.num_classes)
    ckpts = RunCheckpoints(workdir, metadata=checkpoint_metadata(config, info.class_names))
    restored = ckpts.restore_variables(experiment.abstract_variables(config, model), which)
    ckpts.close()
    if restored is None:
        raise FileNotFoundError(
            f"No {which} checkpoint in {workdir}: train first with --mode=train."
        )
    writer = create_writer(str(workdir.eval_log_dir(split)), just_logging=jax.process_index() > 0)
    results = evaluate_and_report(
        make_eval_step(model, info.num_classes, config.data),
        replicate(experiment.eval_variables(config, restored)),
        info,
        config,
        split,
        step=int(restored["step"]),
        workdir=workdir,
        writer=writer,
    )
    writer.close()
    return results
