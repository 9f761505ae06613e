"""DSA: DC with Differentiable Siamese Augmentation, from real images (as dc.py otherwise):
`configs/distill/dsa.py:<dataset>_ipc<N>` (as dm.py's variants).

  python -m bird_jax.distill --config=configs/distill/dsa.py:cifar10_ipc10 --workdir=runs/dsa10
"""

from bird_jax.distill import defaults


def get_config(variant: str = "cifar10_ipc10"):
    return defaults.get_config("dsa", variant)
