"""ConvNeXt (Liu et al. 2022) with the official recipe, scaled to the run's batch.

  python -m bird_jax.main --config=configs/convnext_tiny.py --workdir=runs/convnext_tiny \
      --config.data.root=/data/birds
  python -m bird_jax.main --config=configs/convnext_tiny.py:base --workdir=runs/convnext_base ...

Variants: atto, femto, pico, nano, tiny (default), small, base, large, xlarge.
Recipe (official ImageNet-1k): AdamW lr 4e-3 at batch 4096 (scaled linearly to batch_size),
weight decay 0.05, 20 warmup epochs of 300, cosine to 1e-6, label smoothing 0.1, EMA 0.9999,
drop path 0.1 (T) / 0.4 (S) / 0.5 (B, L, XL), and its augmentation (RECIPE_PIPELINE): bicubic
random-resized-crop, flip, RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25 (pixel mode),
Mixup 0.8 / CutMix 1.0 (switch 0.5) with soft, smoothed targets. Expected: throughput in
BENCHMARKS.md; from scratch on a few hundred bird photos ConvNeXt underfits — it needs
ImageNet-scale data or pretrained weights.
"""

import ml_collections

from configs import default

_DROP_PATH = {
    "atto": 0.0, "femto": 0.0, "pico": 0.0, "nano": 0.1, "tiny": 0.1,
    "small": 0.4, "base": 0.5, "large": 0.5, "xlarge": 0.5,
}  # fmt: skip


RECIPE_PIPELINE = "|".join(
    [
        'random_resized_crop(interpolation="bicubic")',
        "flip_lr",
        'randaugment("rand-m9-mstd0.5-inc1", interpolation="bicubic")',
        'random_erasing(mode="pixel", p=0.25)',
        "mixup(mixup_alpha=0.8, cutmix_alpha=1.0)",
    ]
)


def get_config(size: str = "tiny") -> ml_collections.ConfigDict:
    """Returns the ConvNeXt config for one model size."""
    if size not in _DROP_PATH:
        raise ValueError(f"Unknown ConvNeXt size {size!r}: use one of {list(_DROP_PATH)}.")
    config = default.get_config()
    config.model_name = f"convnext_{size}"
    config.model.drop_path_rate = _DROP_PATH[size]
    config.data.source = "folder"
    config.data.image_size = 224
    config.data.train_pipeline = RECIPE_PIPELINE
    config.data.interpolation = "bicubic"
    config.batch_size = 128
    config.base_batch_size = 4096
    config.lr = 4e-3
    config.warmup_lr = 0.0
    config.min_lr = 1e-6
    config.weight_decay = 0.05
    config.num_epochs = 300.0
    config.warmup_epochs = 20.0
    config.grad_clip_norm = 0.0  # the official recipe does not clip
    config.label_smoothing = 0.1
    config.ema_decay = 0.9999
    config.eval_with_ema = False  # set True once the EMA has had time to warm up
    config.eval_every_steps = 1000
    config.checkpoint_every_steps = 1000
    return config
