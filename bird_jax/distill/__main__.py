"""Command line: distil a dataset into a few images per class, then evaluate the set.

  python -m bird_jax.distill --config=configs/distill/dm.py:cifar10_ipc10 --workdir=runs/dm10
  python -m bird_jax.distill --config=configs/distill/coreset.py:random_birds_ipc1 \
      --workdir=runs/r1 --config.data.root=/data/cub20

Running the same command again resumes from the last checkpoint of the synthetic set.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from bird_jax import cli
from bird_jax.distill.run import distill_and_evaluate
from bird_jax.signals import Stopped, StopRequest
from bird_jax.workdir import Workdir

FLAGS = flags.FLAGS


def define_flags() -> None:
    """This command's flags (defined by cli.run, never on import)."""
    config_flags.DEFINE_config_file(
        "config", None, "Distillation config (configs/distill/<method>.py:<dataset>_ipc<N>).",
        lock_config=True,
    )  # fmt: skip
    flags.DEFINE_string("workdir", None, "Directory for the set, its checkpoints and reports.")
    flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    stop = StopRequest().install()
    try:
        distill_and_evaluate(FLAGS.config, Workdir(FLAGS.workdir), stop)
    except Stopped as stopped:
        sys.exit(stopped.exit_code)


if __name__ == "__main__":
    cli.run(main, define_flags)
