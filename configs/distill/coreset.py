"""Coreset baselines, real images selected per class: `configs/distill/coreset.py:<coreset>_
<dataset>_ipc<N>` with coreset random | herding | kcenter (datasets as dm.py's).

  python -m bird_jax.distill --config=configs/distill/coreset.py:random_cifar10_ipc10 \
      --workdir=runs/random_c10_10

herding and k-center embed with a random ConvNet; --config.distill.embedding_epochs=N trains it
on the real images first.
"""

from bird_jax.distill import defaults


def get_config(variant: str = "random_cifar10_ipc10"):
    method, _, dataset_ipc = variant.partition("_")
    if method not in defaults.CORESETS:
        raise ValueError(f"Unknown coreset {method!r} in {variant!r}; known: {defaults.CORESETS}.")
    return defaults.get_config(method, dataset_ipc)
