"""PCA of the real images as a storage-matched baseline ("eigen-birds"):
`configs/distill/pca.py:<dataset>_ipc<N>` (components shared by all classes) or
`configs/distill/pca.py:class_<dataset>_ipc<N>` (one PCA per class; at IPC 1 the class means).

  python -m bird_jax.distill --config=configs/distill/pca.py:birds_ipc10 \
      --config.data.root=/data/cub20 --workdir=runs/pca_birds_10

The set stores the mean, k components and each kept image's k coefficients within the values
of N images per class, and trains on the images decoded from them; eigen.png shows the mean and
the top components (datasets as dm.py's).
"""

from bird_jax.distill import defaults


def get_config(variant: str = "birds_ipc10"):
    if variant.startswith("class_"):
        return defaults.get_config("pca_class", variant.removeprefix("class_"))
    return defaults.get_config("pca", variant)
