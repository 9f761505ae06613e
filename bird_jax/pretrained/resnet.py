"""torchvision ResNet checkpoints onto `bird_jax.models.resnet.ResNet`; timm's ResNets (the
torchvision architecture: resnet18...resnet101 without suffix letters) name their tensors
identically, `fc` included."""

from bird_jax.models.resnet import ARCHITECTURES
from bird_jax.pretrained.formats import Format, module_rules, register

_BLOCK = r"layer(\d)\.(\d+)"
_OURS = r"layer\1_block\2"

TORCHVISION = register(
    Format(
        "torchvision_resnet",
        models=tuple(ARCHITECTURES),
        signature=("conv1.weight", "layer1.0.conv1.weight"),
        rules=(
            *module_rules("conv1", "stem_conv", "dense"),
            *module_rules("bn1", "stem_bn", "batch_norm"),
            *module_rules(rf"{_BLOCK}\.(conv\d)", rf"{_OURS}/\3", "dense"),
            *module_rules(rf"{_BLOCK}\.(bn\d)", rf"{_OURS}/\3", "batch_norm"),
            *module_rules(rf"{_BLOCK}\.downsample\.0", f"{_OURS}/downsample_conv", "dense"),
            *module_rules(rf"{_BLOCK}\.downsample\.1", f"{_OURS}/downsample_bn", "batch_norm"),
            *module_rules("fc", "head", "dense"),
        ),
    )
)
