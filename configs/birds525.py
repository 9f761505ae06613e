"""The bird study: the lightweight CNN on Kaggle "BIRDS 525 SPECIES", 10 species x 100 photos.

  python -m bird_jax.main --config=configs/birds525.py --workdir=runs/birds525 \
      --config.data.root=/data/birds525
  python -m bird_jax.main --config=configs/birds525.py:study ...   # + the study's augmentations

Like the study, it keeps the species with at least 200 train images, the 10 largest of them
(ties by name), and a seeded sample of 100 train images of each (data.split_seed); valid and test
keep all their images of those species (5 each). The label mapping goes to workdir/labels.json.
Variants as in configs/lightweight_cnn.py.

Data: root is the unzipped Kaggle download, with birds.csv and train/valid/test/<SPECIES>/*.jpg
(www.kaggle.com/datasets/gpiosenka/100-bird-species). Without data.root, kagglehub fetches it when
Kaggle credentials and network exist; otherwise the error says what to download. Optionally
convert it once to array_record and read it from there (faster start, no header checks):

  python -m bird_jax.data.prepare --dataset=folder --root=/data/birds525 --name=birds525 \
      --data_dir=/data/tfds
  ... --config.data.source=tfds --config.data.data_dir=/data/tfds

Expected accuracy: not measured yet (no copy of BIRDS 525 on the development machine).
"""

import ml_collections

from bird_jax import config as defaults


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """Returns the study config; `variant` picks the augmentations as in lightweight_cnn."""
    config = defaults.lightweight_cnn(variant)
    config.data.name = "birds525"  # TFDS name after the optional conversion (docstring)
    config.data.root = ""
    config.data.kaggle_handle = "gpiosenka/100-bird-species"
    config.data.min_images_per_class = 200
    config.data.top_k_classes = 10
    config.data.images_per_class = 100
    config.data.split_seed = 0
    return config
