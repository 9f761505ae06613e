"""Fine-tune a pretrained model on CIFAR-10 at 224 px: `configs/cifar10.py:<model>`.

The acceleration review fine-tuned EfficientNet-B0 (96%), ResNet-50 (92%) and a ViT (97%) on
CIFAR-10 and timed float32, mixed precision and gradient accumulation. Here, per model:

  python -m bird_jax.main --config=configs/cifar10.py:efficientnet_b0 --workdir=runs/c10_b0 \
      --config.init_from=efficientnet_b0.pth --config.data.data_dir=/data/tfds
  python -m bird_jax.study --study=techniques --config=configs/cifar10.py:vit_b16 \
      --config.init_from=vit_b16.safetensors --workdir=runs/c10_vit --split=test

(models: efficientnet_b0, resnet50, vit_b16, or any other with a fine-tuning recipe). The 32 px
images are upsampled to 224 px; evaluation resizes without cropping. From a JPEG folder instead
of TFDS: --config.data.source=folder --config.data.root=/data/cifar10-jpeg. 10% of train is the
validation split. Expected accuracy: not measured here (CPU only; BENCHMARKS.md has cub20).
"""

import ml_collections

from bird_jax import config as defaults


def get_config(model_name: str = "efficientnet_b0") -> ml_collections.ConfigDict:
    """The fine-tuning recipe of `model_name` on CIFAR-10, 3 epochs at 224 px."""
    config = defaults.finetune(model_name)
    config.data.source = "tfds"
    config.data.name = "cifar10"
    config.data.train_split = "train"
    config.data.eval_split = "valid"
    config.data.valid_from_train = 0.1
    config.data.train_pipeline = "random_resized_crop(scale=(0.6, 1))|flip_lr"
    config.data.eval_pipeline = "center_crop(crop_pct=1.0)"
    config.batch_size = 64
    config.base_batch_size = 32  # the recipe's lr is per 32 images: scaled x2
    config.num_epochs = 3.0
    config.warmup_epochs = 0.3
    config.eval_every_steps = 500
    config.checkpoint_every_steps = 500
    return config
