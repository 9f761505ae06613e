"""The training loop. Reads top to bottom: setup, input, model, checkpoints, update, loop."""

import json
import os
import signal

import flax.jax_utils
import jax
import ml_collections
import numpy as np
from absl import logging

from bird_jax import augment, data, distributed, efficiency, experiment, reporting
from bird_jax.augment import gallery
from bird_jax.checkpoints import RunCheckpoints
from bird_jax.evaluate import evaluate_and_report, make_eval_step
from bird_jax.precision import get_policy
from bird_jax.signals import Stopped, StopRequest
from bird_jax.train_step import replicate
from bird_jax.writers import create_writer, periodic_actions


def _flat_hparams(config: ml_collections.ConfigDict, prefix: str = "") -> dict:
    """Scalar config values as a flat {'a.b': value} dict for TensorBoard's hparams tab."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            flat.update(_flat_hparams(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        elif isinstance(value, (tuple, list)):
            flat[name] = str(value)
    return flat


def validate(config: ml_collections.ConfigDict) -> None:
    """Fails before any work when the batch cannot be split as configured."""
    per_device, remainder = divmod(config.batch_size, jax.device_count())
    if remainder or per_device == 0:
        raise ValueError(
            f"batch_size={config.batch_size} must be a positive multiple of the "
            f"{jax.device_count()} devices."
        )
    if per_device % config.grad_accum_steps:
        raise ValueError(
            f"The per-device batch {per_device} (batch_size / devices) is not divisible by "
            f"grad_accum_steps={config.grad_accum_steps}."
        )
    get_policy(config.precision)


def _input_images(config: ml_collections.ConfigDict, info: data.DatasetInfo, batch: dict) -> dict:
    """TensorBoard images of the input: the first train batch as the model sees it (device
    augmentations applied), and each augmentation op alone plus whole-pipeline samples."""
    host_batch = jax.device_get(batch)
    images = np.asarray(host_batch["image"]).reshape(-1, *batch["image"].shape[-3:])[:32]
    labels = np.asarray(host_batch["label"]).reshape(-1)[:32]
    pipeline = augment.train_pipeline(config.data)
    augmented = gallery.apply_device_half(
        pipeline, config.data, images, labels, info.num_classes, config.seed
    )
    rows = gallery.preview_rows(config, info, config.data.train_split, seed=config.seed)
    return {
        "train/inputs": reporting.image_grid(augmented)[None],
        "train/augmentations": reporting.labelled_rows_image(rows)[None],
    }


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Trains (or resumes) the run in `workdir`; returns the final evaluation metrics."""
    # ------------------------------------------------------------------ Setup
    validate(config)
    is_chief = jax.process_index() == 0
    os.makedirs(workdir, exist_ok=True)
    writer = create_writer(workdir, just_logging=not is_chief)

    # ------------------------------------------------------------------ Input
    info = data.load_splits(config.data)
    class_names = info.class_names
    num_train = info.num_examples(config.data.train_split)
    train_iter = data.TrainIterator(
        info, config.data, global_batch_size=config.batch_size, seed=config.seed
    )

    # ------------------------------------------------------------------ Model and state
    exp = experiment.build(config, class_names, num_train)
    num_steps = exp.num_train_steps
    logging.info(
        "%s: %d classes, %d train images, %d steps of batch %d.",
        config.model_name,
        len(class_names),
        num_train,
        num_steps,
        config.batch_size,
    )

    # ------------------------------------------------------------------ Checkpoints
    ckpts = RunCheckpoints(
        workdir,
        metadata=experiment.run_metadata(config, class_names),
        max_to_keep=config.max_to_keep,
    )
    state = exp.state
    restored = ckpts.restore(state)
    if restored is not None:
        state, data_state = restored
        train_iter.set_state(data_state)
    start_step = int(state.step)
    if is_chief:  # only now: a refused (incompatible) workdir keeps its own files
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))
        with open(os.path.join(workdir, "labels.json"), "w") as f:
            json.dump(class_names, f, indent=2)
    state = replicate(state)

    # ------------------------------------------------------------------ Update and eval steps
    p_train_step = experiment.pmapped_train_step(config, exp)
    p_eval_step = make_eval_step(exp.model, len(class_names), config.data)

    def run_eval(step: int) -> dict[str, float]:
        return evaluate_and_report(
            p_eval_step,
            state.eval_variables(config.eval_with_ema),
            info,
            config,
            config.data.eval_split,
            step=step,
            workdir=workdir,
            writer=writer,
        )

    # ------------------------------------------------------------------ Loop
    hooks = []
    if is_chief:
        writer.write_hparams(_flat_hparams(config))
        writer.write_texts(start_step, {"config": f"```\n{config}\n```"})
        hooks.append(
            periodic_actions.ReportProgress(
                num_train_steps=num_steps, writer=writer, every_steps=config.log_every_steps
            )
        )
        if config.profile:
            hooks.append(periodic_actions.Profile(logdir=workdir, num_profile_steps=5))

    logging.info("Training from step %d to %d.", start_step, num_steps)
    train_metrics = None
    results: dict[str, float] = {}
    accounting = efficiency.RunAccounting(config, images_per_step=config.batch_size)
    clock = accounting.clock
    step, stopping = start_step, False
    with StopRequest() as stop:
        for step in range(start_step + 1, num_steps + 1):
            first = step == start_step + 1
            with jax.profiler.StepTraceAnnotation("train", step_num=step):
                with clock.phase("input_wait"):
                    batch = next(train_iter)
                with clock.phase("compile" if first else "train"):
                    state, metrics = p_train_step(state, batch)
                    clock.step_done(metrics)  # waits for the previous step only (not donated)
            if first:
                accounting.measure_step(p_train_step, state, batch)  # reuses the compile
                if is_chief and config.log_input_grid:
                    writer.write_images(step, _input_images(config, info, batch))
            metrics = flax.jax_utils.unreplicate(metrics)
            train_metrics = metrics if train_metrics is None else train_metrics.merge(metrics)
            for hook in hooks:
                hook(step)

            is_last = step == num_steps
            if step % config.log_every_steps == 0 or is_last:
                with clock.phase("train"):  # waiting for this step's metrics is training time
                    summary = {f"train/{k}": v for k, v in train_metrics.compute().items()}
                writer.write_scalars(step, summary)
                train_metrics = None
            evaluate_now = step % config.eval_every_steps == 0 or is_last
            stopping = distributed.stop_agreed(stop.requested, step)  # same step on all processes
            save_now = step % config.checkpoint_every_steps == 0 or is_last or stopping
            if evaluate_now or save_now:  # one device-to-host copy serves both
                with clock.phase("train"):
                    clock.restart_steps()  # finishes the step in flight; the pause is not step time
                with clock.phase("checkpoint"):
                    host_state = jax.device_get(flax.jax_utils.unreplicate(state))
            if evaluate_now:
                with clock.phase("eval"):
                    results = run_eval(step)
                accounting.evaluated(step, results["accuracy"])
                with clock.phase("checkpoint"):
                    ckpts.save_if_best(step, host_state, results["accuracy"])
            if save_now:
                with clock.phase("checkpoint"):
                    ckpts.save(step, host_state, train_iter.get_state(), force=True)
            if stopping:
                logging.warning(
                    "Stopped at step %d of %d; run the same command to resume.", step, num_steps
                )
                break
    if not results and start_step >= num_steps:
        logging.info("The run in %s had already finished; evaluating it.", workdir)
        results = run_eval(start_step)
    ckpts.wait_until_finished()
    ckpts.close()
    if step > start_step:
        accounting.finish(workdir, writer, step=step, trained_steps=step - start_step)
    else:
        accounting.tracker.stop()
    writer.flush()
    if stopping:  # processes that got no signal themselves stop as for SIGTERM
        raise Stopped(stop.signum or signal.SIGTERM, step)
    return results
