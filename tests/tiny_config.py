"""A tiny experiment for tests: a small lightweight CNN on the embedded digits at 16 px.

Also usable from the command line: `python -m bird_jax.main --config=tests/tiny_config.py ...`.
"""

import ml_collections

from bird_jax import config as defaults

TOTAL_STEPS = 6


def tiny_config() -> ml_collections.ConfigDict:
    """A small lightweight CNN on the embedded digits at 16 px: quick to compile and run."""
    config = defaults.get_config()
    config.model.stage_widths = (8, 8)
    config.model.stage_depths = (1, 1)
    config.model.stage_strides = (1, 2)
    config.model.stage_expansions = (1, 2)
    config.model.head_features = 16
    config.data.image_size = 16
    config.precision = "float32"
    config.batch_size = 16
    config.eval_batch_size = 64
    config.num_train_steps = TOTAL_STEPS
    config.warmup_epochs = 0.0
    config.log_every_steps = 2
    config.eval_every_steps = 3
    config.checkpoint_every_steps = 3
    config.ema_decay = 0.9
    config.log_input_grid = False
    return config


def get_config() -> ml_collections.ConfigDict:
    return tiny_config()
