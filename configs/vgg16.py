"""VGG16 (Simonyan & Zisserman 2015, with BatchNorm) on a class-per-folder bird set.

  python -m bird_jax.main --config=configs/vgg16.py --workdir=runs/vgg16 \
      --config.data.root=/data/birds

`configs/vgg16.py:plain` drops BatchNorm (the paper's original network). The head is sized for
the input resolution (at 224 px: 7x7x512 -> 4096 -> 4096 -> classes, 138 M params at 1000 classes).
Expected: see BENCHMARKS.md for measured throughput; VGG16 from scratch needs far more than a few
hundred images per class — it is the study's large reference model.
"""

import ml_collections

from configs import default


def get_config(variant: str = "bn") -> ml_collections.ConfigDict:
    """Returns the VGG16 config; variant 'bn' (default) or 'plain'."""
    if variant not in ("bn", "plain"):
        raise ValueError(f"Unknown vgg16 variant {variant!r}: use 'bn' or 'plain'.")
    config = default.get_bird_folder_config()
    config.model_name = "vgg16"
    config.model.batch_norm = variant == "bn"
    config.model.dropout_rate = 0.5
    config.data.image_size = 224
    config.lr = 1e-3
    return config
