"""Writes a grid of augmented training samples: each op of a pipeline alone, then the whole thing.

  python -m bird_jax.preview --config=configs/lightweight_cnn.py:study --out=grid.png \
      --config.data.root=/data/cub20
  python -m bird_jax.preview --config=configs/quickstart.py --out=ops.png \
      --ops='clahe(4.0)|median_blur(5)|grid_mask()'

Rows: the original images (eval crop), every op of data.train_pipeline (or of --ops) applied
alone with probability 1, then --pipeline_rows rows of the full train pipeline.
"""

from __future__ import annotations

import os

from absl import app, flags
from ml_collections import config_flags
from PIL import Image

from bird_jax import augment, cli, data, figures
from bird_jax.augment import gallery

FLAGS = flags.FLAGS


def define_flags() -> None:
    """This command's flags (defined by cli.run, never on import)."""
    config_flags.DEFINE_config_file("config", None, "Experiment config (configs/*.py[:variant]).")
    flags.DEFINE_string("out", "augmentations.png", "Where to write the PNG grid.")
    flags.DEFINE_string("split", None, "Split to draw images from (default: data.train_split).")
    flags.DEFINE_integer("num_images", 6, "Images per row (taken from different classes).")
    flags.DEFINE_integer("pipeline_rows", 2, "Rows of samples of the whole train pipeline.")
    flags.DEFINE_string("ops", None, "Ops to show one by one instead of data.train_pipeline's.")
    flags.DEFINE_integer("seed", 0, "Seed of the random augmentations.")
    flags.mark_flags_as_required(["config"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = FLAGS.config
    rows = gallery.preview_rows(
        config,
        data.load_splits(config.data),
        FLAGS.split or config.data.train_split,
        FLAGS.num_images,
        FLAGS.ops,
        FLAGS.pipeline_rows,
        FLAGS.seed,
    )
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    Image.fromarray(figures.labelled_rows_image(rows)).save(FLAGS.out)
    print(f"Wrote {FLAGS.out}: {len(rows)} rows; pipeline: {augment.train_pipeline(config.data)}")


if __name__ == "__main__":
    cli.run(main, define_flags)
