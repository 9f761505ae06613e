"""The training loop. Reads top to bottom: setup, input, model, checkpoints, update, loop."""

import signal

import jax
import ml_collections

from bird_jax import (
    console,
    data,
    devices,
    distributed,
    efficiency,
    experiment,
    finetune,
    tensorboard,
)
from bird_jax.checkpoints import RunCheckpoints
from bird_jax.evaluate import evaluate_and_report, make_eval_step
from bird_jax.hooks import InputImages, ProfileSteps
from bird_jax.precision import get_policy
from bird_jax.signals import Stopped, StopRequest
from bird_jax.workdir import Workdir, checkpoint_metadata
from bird_jax.writers import create_writer


def validate(config: ml_collections.ConfigDict) -> None:
    """Fails before any work when the batch cannot be split as configured, or the precision or
    fine-tuning settings are invalid."""
    devices.check_batch_split(config.batch_size, config.grad_accum_steps)
    get_policy(config.precision)
    finetune.validate(config.finetune)


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | Workdir, stop: StopRequest | None = None
) -> dict[str, float]:
    """Trains (or resumes) the run in `workdir`; returns the final evaluation metrics.

    SIGTERM or Ctrl-C at any point, set-up included, saves a checkpoint (once) and raises
    Stopped; `stop` is the caller's StopRequest, else one is active for the whole call."""
    if stop is None:
        with StopRequest() as stop:
            return train_and_evaluate(config, workdir, stop)
    # ------------------------------------------------------------------ Setup
    validate(config)
    workdir = Workdir(workdir)
    is_chief = jax.process_index() == 0

    # ------------------------------------------------------------------ Input
    info = data.load_splits(config.data)
    class_names = info.class_names
    num_train = info.num_examples(config.data.train_split)
    train_iter = data.TrainIterator(
        info, config.data, global_batch_size=config.batch_size, seed=config.seed
    )

    # ------------------------------------------------------------------ Model and checkpoints
    exp = experiment.build(config, class_names, num_train)
    num_steps = exp.num_train_steps
    # Pretrained weights are read and checked before anything is written to the workdir.
    pretrained = None if workdir.has_checkpoints() else exp.load_pretrained()
    workdir.create()
    writer = create_writer(str(workdir), just_logging=not is_chief)
    ckpts = RunCheckpoints(
        workdir,
        metadata=checkpoint_metadata(config, class_names),
        max_to_keep=config.max_to_keep,
    )
    restored = ckpts.restore(exp.abstract_state())
    if restored is None:
        state = exp.init_state(pretrained)
    else:
        state, data_state = restored
        train_iter.set_state(data_state)
    start_step = int(state.step)
    if is_chief:  # only now: a refused (incompatible) workdir keeps its own files
        workdir.write_config(config)
        workdir.write_labels(class_names)
        tensorboard.write_hparams(str(workdir), config)
        writer.write_texts(start_step, {"config": f"```\n{config}\n```"})
    console.say(console.header(config, info, exp, state, workdir, start_step))
    starting_point = console.starting_point(config, pretrained)
    if start_step == 0 and starting_point:
        console.say(starting_point)
    state = devices.replicate(state)

    # ------------------------------------------------------------------ Update and eval steps
    p_train_step = experiment.pmapped_train_step(config, exp)
    p_eval_step = make_eval_step(exp.model, len(class_names), config.data)
    accounting = efficiency.RunAccounting(
        config, images_per_step=config.batch_size, workdir=workdir, start_step=start_step
    )
    clock = accounting.clock

    def run_eval(step: int) -> dict[str, float]:
        started = clock.now()
        with clock.phase("eval"):
            results = evaluate_and_report(
                p_eval_step,
                state.eval_variables(config.eval_with_ema),
                info,
                config,
                config.data.eval_split,
                step=step,
                workdir=workdir,
                writer=writer,
            )
        split = config.data.eval_split
        writer.write_scalars(step, {f"{split}/kwh": accounting.kwh_so_far()})
        console.say(console.evaluation_line(split, step, results, clock.now() - started))
        return results

    # ------------------------------------------------------------------ Loop
    hooks = []
    if is_chief:
        if config.log_input_grid:
            hooks.append(InputImages(config, info, writer))
        if config.profile:
            hooks.append(ProfileSteps(str(workdir)))
    progress = console.Progress(start_step, num_steps)
    if start_step < num_steps:
        console.say("compiling the train step…")
    train_metrics = None
    results: dict[str, float] = {}
    best = None
    step, stopping = start_step, False
    for step in range(start_step + 1, num_steps + 1):
        first = step == start_step + 1
        with jax.profiler.StepTraceAnnotation("train", step_num=step):
            with clock.phase("input_wait"):
                batch = next(train_iter)
            with clock.phase("compile" if first else "train"):
                state, metrics = p_train_step(state, batch)
                clock.step_done(metrics)  # waits for the previous step only (not donated)
        if first:
            counted = experiment.flop_counted_train_step(config, exp)
            accounting.measure_step(p_train_step, state, batch, count_with=counted)
            jax.block_until_ready(metrics)
            progress.started(step)
        metrics = devices.unreplicate(metrics)
        train_metrics = metrics if train_metrics is None else train_metrics.merge(metrics)
        for hook in hooks:
            hook(step, batch)

        is_last = step == num_steps
        if step % config.log_every_steps == 0 or is_last:
            with clock.phase("train"):  # waiting for this step's metrics is training time
                averaged = train_metrics.compute()
            writer.write_scalars(step, {f"train/{k}": v for k, v in averaged.items()})
            console.say(progress.line(step, averaged))
            train_metrics = None
        evaluate_now = step % config.eval_every_steps == 0 or is_last
        stopping = distributed.stop_agreed(stop.requested, step)  # same step on all processes
        save_now = step % config.checkpoint_every_steps == 0 or is_last or stopping
        if evaluate_now or save_now:  # one device-to-host copy serves both
            with clock.phase("train"):
                clock.restart_steps()  # finishes the step in flight; the pause is not step time
            with clock.phase("checkpoint"):
                host_state = devices.to_host(state)
        if evaluate_now:
            with progress.paused():
                results = run_eval(step)
            accounting.evaluated(step, results["accuracy"])
            if best is None or results["accuracy"] > best[1]:
                best = (step, results["accuracy"])
            with clock.phase("checkpoint"):
                ckpts.save_if_best(step, host_state, results["accuracy"])
        if save_now:
            with clock.phase("checkpoint"):
                ckpts.save(step, host_state, train_iter.get_state(), force=True)
                if not is_last:  # a killed run keeps its cost up to here
                    accounting.record(step)
        if stopping:
            console.say(f"stopped at step {step} of {num_steps}: run the same command to resume.")
            break
    if not results and start_step >= num_steps:
        console.say(f"the run in {workdir} had already finished; evaluating it.")
        results = run_eval(start_step)
    ckpts.wait_until_finished()
    ckpts.close()
    if step > start_step:
        summary = accounting.finish(step)
        if is_chief:
            writer.write_texts(step, {"efficiency": tensorboard.efficiency_table(summary)})
            console.say(console.closing(summary, best, config.data.eval_split, workdir))
    else:
        accounting.tracker.stop()
    writer.close()  # its threads would otherwise end at interpreter shutdown, with tracebacks
    if stopping:  # processes that got no signal themselves stop as for SIGTERM
        raise Stopped(stop.signum or signal.SIGTERM, step)
    return results
