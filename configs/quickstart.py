"""Quickstart: the lightweight CNN on the embedded digits set (sklearn), offline, CPU-friendly.

  python -m bird_jax.main --config=configs/quickstart.py --workdir=runs/quickstart

Expected (2-core Intel Xeon CPU, float32 through precision="auto", 264 steps): 47 s wall time
including compilation, 100% top-1 on the validation split and 98.9% on the test split (180
images each; BENCHMARKS.md).
"""

import ml_collections

from bird_jax import config as defaults


def get_config() -> ml_collections.ConfigDict:
    """Returns the quickstart config."""
    config = defaults.get_config()
    config.data.image_size = 32
    config.data.train_pipeline = "random_resized_crop(scale=(0.6, 1))"  # digits are not mirrored
    config.batch_size = 64
    config.lr = 4e-3
    config.base_batch_size = 64
    config.num_epochs = 12.0
    config.warmup_epochs = 1.0
    config.weight_decay = 0.01
    config.log_every_steps = 25
    config.eval_every_steps = 25  # about once per epoch (22 steps): curves, not two dots
    config.checkpoint_every_steps = 100
    return config
