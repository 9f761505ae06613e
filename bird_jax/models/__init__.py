"""Image classifiers as flax.linen Modules, created by name.

model = create_model("convnext_tiny", num_classes=200, dtype=jnp.bfloat16, drop_path_rate=0.1)
logits = model.apply(variables, images, train=True, rngs={"dropout": key}, mutable=[...])
"""

from bird_jax.models.convnet import ConvNet
from bird_jax.models.convnext import ConvNeXt
from bird_jax.models.efficientnet import EfficientNet
from bird_jax.models.lightweight import LightweightCNN
from bird_jax.models.mobilenet import MobileNetV2
from bird_jax.models.registry import create_model, list_models, model_kwargs
from bird_jax.models.resnet import ResNet
from bird_jax.models.vgg import VGG
from bird_jax.models.vit import ViT

__all__ = [
    "VGG",
    "ConvNet",
    "ConvNeXt",
    "EfficientNet",
    "LightweightCNN",
    "MobileNetV2",
    "ResNet",
    "ViT",
    "create_model",
    "list_models",
    "model_kwargs",
]
