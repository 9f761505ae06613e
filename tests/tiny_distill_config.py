"""A tiny distillation for tests: DM on the embedded digits at 16 px with a narrow ConvNet-2.

From the command line: `python -m bird_jax.distill --config=tests/tiny_distill_config.py:dm ...`
(any method of bird_jax.distill.defaults.METHODS).
"""

import ml_collections

from bird_jax.distill import defaults


def get_config(method: str = "dm") -> ml_collections.ConfigDict:
    config = defaults.get_config(method, "cifar10_ipc2")
    config.data.source = "embedded"
    config.data.name = "digits"
    config.data.image_size = 16
    config.data.mean, config.data.std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    config.model.width = 8
    config.model.depth = 2
    config.distill.iterations = 4
    config.distill.batch_real = 16
    config.distill.outer_loop, config.distill.inner_loop = 2, 2
    config.distill.log_every = 2
    config.distill.checkpoint_every = 2
    config.evaluation.runs = 1
    config.evaluation.epochs = 4
    config.precision = "float32"
    return config
