"""One distillation run, top to bottom: check, load, distill (resumable), evaluate, account.

The workdir gets config.json, the set (synthetic.npz + labels.json, rewritten at every
checkpoint; whitening.npz beside them where the set is learned ZCA-whitened), distill_state.npz
(resume), grids/ (the set as a picture at every checkpoint: its evolution), eigen.png or
autoencoder.png (PCA sets: each fit's mean image and top components; autoencoder sets: real
images over their decodings), results.json (the protocol's accuracies by iteration and network,
the set's bytes, the time and energy of distilling and of one evaluation run), efficiency.json
and TensorBoard events (loss, images, accuracies).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import ml_collections
import numpy as np
from PIL import Image

from bird_jax import console, efficiency
from bird_jax.data.sources import load_splits
from bird_jax.distill import methods, protocol, reductions, zca
from bird_jax.distill.defaults import CORESETS, ONE_SHOT, REDUCTIONS
from bird_jax.distill.real import (
    RealData,
    check_images_per_class,
    denormalise,
    load_images,
    load_real,
    split_counts,
)
from bird_jax.distill.state_file import saved_iteration
from bird_jax.distill.synthetic import LABELS_FILE, SyntheticSet, save_synthetic
from bird_jax.efficiency import flops
from bird_jax.figures import image_grid
from bird_jax.signals import Stopped, StopRequest
from bird_jax.workdir import Workdir, read_json
from bird_jax.writers import create_writer

RESULTS_FILE = "results.json"
GRID_IMAGES_PER_CLASS = 10  # a large coreset's picture shows each class's first ten


def grid_image(synthetic: SyntheticSet) -> np.ndarray:
    """The set as one uint8 picture, class by class, each class's images (at most ten) side by
    side (several classes a row when a class has fewer than 10 images)."""
    shown = synthetic.normalised_images()[:, :GRID_IMAGES_PER_CLASS]
    images = denormalise(shown, synthetic.mean, synthetic.std)
    ncols = shown.shape[1] * max(1, GRID_IMAGES_PER_CLASS // shown.shape[1])
    return image_grid(images.reshape(-1, *images.shape[2:]), ncols=ncols)


class _Run:
    """The state one run shares between its phases."""

    def __init__(self, config, workdir: Workdir, real: RealData, whitening, test, accounting,
                 writer):  # fmt: skip
        self.config, self.workdir, self.real, self.test = config, workdir, real, test
        self.whitening = whitening
        self.accounting, self.writer = accounting, writer
        self.results = read_json(workdir.path / RESULTS_FILE) or {"evaluations": []}

    def keep(
        self, iteration: int, images: np.ndarray, label_vectors=None, learning_rate=None
    ) -> SyntheticSet:
        """Writes the set, its grid (PNG and TensorBoard) as of `iteration`."""
        real, method = self.real, self.config.distill.method
        synthetic = SyntheticSet(images, real.class_names, real.mean, real.std, method,
                                 label_vectors, self.whitening, learning_rate)  # fmt: skip
        save_synthetic(synthetic, self.workdir.path)
        grid = grid_image(synthetic)
        grids = self.workdir.path / "grids"
        grids.mkdir(exist_ok=True)
        Image.fromarray(grid).save(grids / f"iteration_{iteration:06d}.png")
        Image.fromarray(grid).save(self.workdir.path / "synthetic.png")
        self.writer.write_images(iteration, {"synthetic": grid[None]})
        return synthetic

    def evaluate(self, iteration: int, synthetic: SyntheticSet, model_names) -> None:
        learned = self.config.evaluation.learned_labels  # FRePo's label vectors, where it has them
        images, labels = synthetic.training_targets() if learned else synthetic.flat()
        clock = self.accounting.clock
        for name in model_names:
            kwh_before = self.accounting.kwh_so_far()
            with clock.phase("eval"):
                result = protocol.evaluate_set(
                    self.config,
                    images,
                    labels,
                    self.test,
                    name,
                    seed=self.config.seed,
                    learning_rate=synthetic.learning_rate,
                )
            result["kwh_per_run"] = (self.accounting.kwh_so_far() - kwh_before) / result["runs"]
            result["iteration"] = iteration
            self.results["evaluations"].append(result)
            self.writer.write_scalars(iteration, {f"eval/{name}/accuracy": result["mean"]})
            console.say(
                f"iteration {iteration}: {name} trained on the set, tested on "
                f"{self.config.data.eval_split}: {result['mean']:.2%} +- {result['std']:.2%} "
                f"over {result['runs']} runs ({result['seconds_per_run']:.0f} s per run)"
            )
            self.write_results()

    def reduce(self) -> tuple[SyntheticSet, int]:
        """A PCA or autoencoder set, kept, with its picture, and the values it stores."""
        key = methods.keys(self.config)[0]
        reduction = reductions.reduce(self.config, key, self.real, self.workdir.path)
        Image.fromarray(reduction.picture).save(self.workdir.path / f"{reduction.picture_name}.png")
        self.writer.write_images(0, {reduction.picture_name: reduction.picture[None]})
        self.results.update(reduction.details)
        return self.keep(0, reduction.images), reduction.stored_values

    def write_results(self) -> None:
        path = self.workdir.path / RESULTS_FILE
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(self.results, indent=1))
        partial.replace(path)


def _loop(run: _Run, stop: StopRequest) -> tuple[SyntheticSet, int | None]:
    """The iterations of DC/DSA/DM (latent too) from the last checkpoint; the final set, kept
    (its state, files and grid written by the last iteration's checkpoint), and the values it
    stores where they are not its pixels."""
    config, settings, workdir = run.config, run.config.distill, run.workdir
    method, sharded, state = methods.start(config, run.real, directory=workdir.path)

    def current(state) -> tuple[np.ndarray, np.ndarray | None, float | None]:
        """The set's images, learned label vectors and step size (None where it learns none)."""
        images = method.images(sharded.shards.merge(state.synthetic))
        return images, method.label_vectors(state), method.learning_rate(state)

    restored = method.restore(workdir.path, state, sharded.shards)
    start = 0
    if restored:
        start, state = restored
        console.say(f"Resuming from iteration {start} ({workdir.path / 'distill_state.npz'}).")
    loop_key = methods.keys(config)[1]
    accounting, clock = run.accounting, run.accounting.clock
    total = method.flops_per_iteration(state, loop_key, sharded)
    run.results["flops_per_iteration"] = total  # also where a finished set is only evaluated
    if total:  # efficiency.json's FLOPs and MFU count one iteration as one step
        devices = sharded.shards.num_devices
        accounting.step_cost = flops.StepCost(total / devices, devices)
    if start == settings.iterations:  # nothing left to run
        return run.keep(start, *current(state)), method.stored_values
    if start == 0:
        synthetic = run.keep(0, *current(state))
        if 0 in settings.eval_at:  # the initial set: where the curve starts
            run.evaluate(0, synthetic, config.evaluation.models[:1])
    progress = console.Progress(start, settings.iterations)
    eval_at = set(settings.eval_at) - {settings.iterations}
    for iteration in range(start, settings.iterations):
        with clock.phase("compile" if iteration == start else "train"):
            key = jax.random.fold_in(loop_key, iteration)
            state, metrics = method.iteration(state, key, sharded)
            clock.step_done(metrics["loss"])
        done = iteration + 1
        if iteration == start:
            progress.started(done)
        if done % settings.log_every == 0 or done == settings.iterations:
            loss = float(metrics["loss"])
            console.say(progress.line(done, {"loss": loss}))
            run.writer.write_scalars(done, {"distill/loss": loss})
        stopping = stop.requested
        last = done == settings.iterations
        if last or done % settings.checkpoint_every == 0 or done in eval_at or stopping:
            with clock.phase("checkpoint"):
                method.save(workdir.path, done, state, sharded.shards)
                synthetic = run.keep(done, *current(state))
                accounting.record(done)
        if done in eval_at:
            with progress.paused():
                run.evaluate(done, synthetic, config.evaluation.models[:1])
            clock.restart_steps()
        if stopping:
            raise Stopped(stop.signum, done)
    return synthetic, method.stored_values


def check_space(directory: Path, config: ml_collections.ConfigDict) -> None:
    """ValueError if `directory` holds a set learned in another space (whitened or not) than
    config.distill asks for: resuming it would mix the two."""
    meta = read_json(directory / LABELS_FILE)
    wanted = methods.zca_reg(config)
    if meta and meta.get("zca_reg") != wanted:
        raise ValueError(
            f"{directory} holds a set learned on {zca.describe(meta.get('zca_reg'))}, this "
            f"config asks for {zca.describe(wanted)}: use another workdir, or set "
            "distill.zca/zca_reg as they were."
        )


def distill_and_evaluate(
    config: ml_collections.ConfigDict, workdir: Workdir, stop: StopRequest | None = None
) -> dict:
    """Distils config.data's train split per config.distill into `workdir`, then evaluates the
    set with every network of evaluation.models on data.eval_split. Returns results.json.
    SIGTERM/Ctrl-C save the set and raise Stopped; `stop` is the caller's StopRequest, else one
    is active for the whole call."""
    if stop is None:
        with StopRequest() as stop:
            return distill_and_evaluate(config, workdir, stop)
    methods.check_config(config)
    info = load_splits(config.data)
    data = config.data
    counts = split_counts(info, data.train_split)
    check_images_per_class(counts, info.class_names, config.distill.ipc)
    reductions.check_budget(config, info.num_classes, int(min(counts)))
    check_space(workdir.path, config)
    # A resumed run's efficiency.json keeps the earlier segments and sums them.
    start = saved_iteration(workdir.path) if config.distill.method not in ONE_SHOT else 0
    if start > config.distill.iterations:
        raise ValueError(
            f"{workdir.path} holds a set after {start} iterations, more than "
            f"distill.iterations={config.distill.iterations}: give {start} or more, or another "
            "workdir."
        )
    workdir.create()
    workdir.write_config(config)
    console.say(f"Loading {data.train_split} and {data.eval_split} of {info.num_classes} classes.")
    real = load_real(data, data.train_split, info)
    test_images, test_labels = load_images(data, data.eval_split, info)
    num_classes, settings = real.num_classes, config.distill
    batch = min(settings.batch_real, int(real.counts.min()))
    accounting = efficiency.RunAccounting(
        config, images_per_step=num_classes * batch, workdir=workdir, start_step=start
    )
    with accounting.clock.phase("input_wait"):  # counted: the whitening's fit is the run's
        real, whitening = methods.learning_space(config, real)  # the test images go the same way
        test = (test_images if whitening is None else whitening.whiten(test_images), test_labels)
    writer = create_writer(str(workdir))
    run = _Run(config, workdir, real, whitening, test, accounting, writer)
    console.say(
        f"{settings.method} at {settings.ipc} images per class: {num_classes} classes, "
        f"{int(real.counts.sum())} real images at {real.image_shape[0]} px, "
        f"{jax.local_device_count()} device(s) -> {workdir}"
    )
    stored = None  # values a PCA set stores; an image set stores its pixels
    if settings.method in CORESETS:
        synthetic = run.keep(0, methods.select_set(config, methods.keys(config)[0], real))
    elif settings.method in REDUCTIONS:
        synthetic, stored = run.reduce()
    else:
        synthetic, stored = _loop(run, stop)
    iterations = 0 if settings.method in ONE_SHOT else settings.iterations
    summary = accounting.record(iterations)
    run.results.update(
        method=settings.method,
        ipc=settings.ipc,
        iterations=iterations,
        storage_bytes=stored or int(np.prod(synthetic.images.shape)),  # a byte per value
        distill_seconds=summary["total"]["wall_s"],  # every segment of a resumed run
        distill_kwh=summary["total"]["kwh"],
    )
    run.evaluate(iterations, synthetic, config.evaluation.models)
    summary = accounting.finish(iterations)
    console.say(efficiency.format_summary(summary))
    writer.flush()
    return run.results
