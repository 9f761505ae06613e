"""Fine-tune an ImageNet-pretrained model on a bird folder: `configs/finetune.py:<model>[,probe]`.

  python -m bird_jax.main --config=configs/finetune.py:mobilenet_v2 --workdir=runs/mnv2_ft \
      --config.init_from=mobilenet_v2-b0353104.pth --config.data.root=/data/cub20
  python -m bird_jax.main --config=configs/finetune.py:convnext_tiny,probe ...   # linear probe

Models: mobilenet_v2, efficientnet_b0, efficientnet_lite0, resnet50, convnext_* and vit_*
(recipes in bird_jax.config.FINETUNE_RECIPES). Weights: any timm, torchvision, Hugging Face or
official ConvNeXt file of that model (.pth/.bin/.safetensors), or `python -m bird_jax.convert`
output. A head for another class count is initialised afresh. Expected results on cub20 (20 CUB
species, 224 px, 2-core CPU): BENCHMARKS.md, "Fine-tuning on cub20".
"""

import ml_collections

from bird_jax import config as defaults


def get_config(arg: str = "mobilenet_v2") -> ml_collections.ConfigDict:
    """`arg` is a model name, optionally followed by ",probe" for a linear probe."""
    model_name, _, mode = arg.partition(",")
    if mode not in ("", "probe"):
        raise ValueError(f"configs/finetune.py:{arg}: after the model name only ',probe' is known.")
    return defaults.finetune(model_name, linear_probe=mode == "probe")
