"""Command line: train or evaluate one experiment.

  python -m bird_jax.main --config=configs/convnext_tiny.py --workdir=runs/convnext_tiny
  python -m bird_jax.main --config=configs/convnext.py:small --workdir=runs/small \
      --config.batch_size=64
  python -m bird_jax.main --mode=evaluate --workdir=runs/convnext_tiny --split=test \
      --checkpoint=best

Running the same train command again resumes from the latest checkpoint in the workdir.
Several processes (hosts) run the same command, plus --coordinator_address, --num_processes and
--process_id where SLURM or Cloud TPU does not supply them (launch/README.md).
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from bird_jax import cli, distributed, evaluate, train
from bird_jax.signals import Stopped, StopRequest
from bird_jax.workdir import Workdir

FLAGS = flags.FLAGS


def define_flags() -> None:
    """This command's flags (defined by cli.run, never on import)."""
    config_flags.DEFINE_config_file(
        "config", None, "Experiment config file (configs/*.py[:variant]).", lock_config=True
    )
    flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard events, reports.")
    flags.DEFINE_enum("mode", "train", ["train", "evaluate"], "Train (and resume), or evaluate.")
    flags.DEFINE_string("split", None, "evaluate: split to evaluate (default: data.eval_split).")
    flags.DEFINE_enum("checkpoint", "latest", ["latest", "best"], "evaluate: which checkpoint.")
    flags.DEFINE_string(
        "coordinator_address",
        None,
        "Multi-process: HOST:PORT of process 0 (or $JAX_COORDINATOR_ADDRESS).",
    )
    flags.DEFINE_integer("num_processes", None, "Multi-process: how many (or $JAX_NUM_PROCESSES).")
    flags.DEFINE_integer("process_id", None, "Multi-process: this one's rank (or $JAX_PROCESS_ID).")
    flags.DEFINE_integer(
        "distributed_timeout_s", 300, "Multi-process: start-up and dead-process detection timeout."
    )
    flags.mark_flag_as_required("workdir")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    run = Workdir(FLAGS.workdir)  # refuses a URL before any process waits for the others
    launch = distributed.detect(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    distributed.initialize(launch, FLAGS.distributed_timeout_s)
    # Training owns SIGTERM/Ctrl-C from here until the process exits: a stop during set-up is kept
    # for the first step, and a repeated SIGTERM during the final save or the distributed shutdown
    # cannot kill it. Evaluation keeps the default (a signal ends it).
    stop = StopRequest().install() if FLAGS.mode == "train" else None
    import jax

    logging.info(
        "JAX %s on %s (%d processes).", jax.__version__, jax.devices(), jax.process_count()
    )
    if FLAGS.mode == "train":
        if FLAGS.config is None:
            raise app.UsageError("--config is required to train.")
        try:
            train.train_and_evaluate(FLAGS.config, run, stop)
        except Stopped as stopped:  # SIGTERM or Ctrl-C: a checkpoint was saved
            sys.exit(stopped.exit_code)
        except KeyboardInterrupt:  # a second Ctrl-C while stopping
            sys.exit(130)
        return
    config = FLAGS.config or run.read_config()
    split = FLAGS.split or config.data.eval_split
    results = evaluate.evaluate_checkpoint(config, run, split=split, which=FLAGS.checkpoint)
    print(" ".join(f"{k}={v:.4f}" for k, v in sorted(results.items())))


if __name__ == "__main__":
    cli.run(main, define_flags)
