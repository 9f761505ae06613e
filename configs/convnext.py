"""ConvNeXt (Liu et al. 2022) with the official recipe, scaled to the run's batch.

  python -m bird_jax.main --config=configs/convnext.py:tiny --workdir=runs/convnext_tiny \
      --config.data.root=/data/birds
  python -m bird_jax.main --config=configs/convnext.py:base --workdir=runs/convnext_base ...

Sizes: atto, femto, pico, nano, tiny (default), small, base, large, xlarge
(`configs/convnext_tiny.py` is the tiny one). Recipe (official ImageNet-1k): AdamW lr 4e-3 at
batch 4096 (scaled linearly to batch_size), weight decay 0.05, 20 warmup epochs of 300, cosine to
1e-6, label smoothing 0.1, EMA 0.9999, drop path 0.1 (T) / 0.4 (S) / 0.5 (B, L, XL), and its
augmentation (bird_jax.config.CONVNEXT_PIPELINE): bicubic random-resized-crop, flip, RandAugment
rand-m9-mstd0.5-inc1, random erasing 0.25 (pixel mode), Mixup 0.8 / CutMix 1.0 (switch 0.5)
with soft, smoothed targets. Expected: throughput in BENCHMARKS.md; from scratch on a few hundred
bird photos ConvNeXt underfits — it needs ImageNet-scale data or pretrained weights.
"""

import ml_collections

from bird_jax import config as defaults


def get_config(size: str = "tiny") -> ml_collections.ConfigDict:
    """Returns the ConvNeXt config for one model size."""
    return defaults.convnext(size)
