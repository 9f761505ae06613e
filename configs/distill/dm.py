"""DM (distribution matching): 20,000 iterations, SGD lr 1 on the images, real batch 256.

  python -m bird_jax.distill --config=configs/distill/dm.py:cifar10_ipc10 --workdir=runs/dm_c10_10

Variants <dataset>_ipc<N>, dataset cifar10 | cifar100 (TFDS; or --config.data.source=folder
--config.data.root=DIR for JPEG folders) | birds (a class-per-folder tree at 64 px, ConvNet-4:
--config.data.root=/data/cub20). Settings: bird_jax/distill/defaults.py; figures: BENCHMARKS.md.
"""

from bird_jax.distill import defaults


def get_config(variant: str = "cifar10_ipc10"):
    return defaults.get_config("dm", variant)
