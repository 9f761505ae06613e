"""Fine-tune a pretrained model on the 20 most frequent Stanford Dogs breeds (TFDS stanford_dogs).

The dogs report fine-tuned ConvNeXt-T/B and MobileNetV2 (tf.keras) on these breeds: 84.4% /
91.9% / 80.0% test top-1. The same comparison here, one budget, each family with its recipe:

  python -m bird_jax.data.prepare --dataset=stanford_dogs --data_dir=/data/tfds
  python -m bird_jax.study --study=transfer --config=configs/stanford_dogs.py \
      --workdir=runs/dogs20 --config.data.data_dir=/data/tfds --split=test \
      --variants=convnext_tiny,convnext_base,mobilenet_v2 \
      --weights=convnext_tiny=convnext_tiny.pth,convnext_base=convnext_base.pth,mobilenet_v2=mnv2.pth

or one model: `--config=configs/stanford_dogs.py:mobilenet_v2 --config.init_from=...` with
bird_jax.main. TFDS's train split has exactly 100 images of every breed, so the 20 breeds are the
most frequent over train + test (data.top_k_classes breaks train ties that way); 10% of train
becomes the validation split. Expected accuracy: not measured here (no download on the
development machine).
"""

import ml_collections

from bird_jax import config as defaults


def get_config(model_name: str = "convnext_tiny") -> ml_collections.ConfigDict:
    """The fine-tuning recipe of `model_name` on Stanford Dogs' 20 most frequent breeds."""
    config = defaults.finetune(model_name)
    config.data.source = "tfds"
    config.data.name = "stanford_dogs"
    config.data.train_split = "train"
    config.data.eval_split = "valid"
    config.data.valid_from_train = 0.1
    config.data.top_k_classes = 20
    return config
