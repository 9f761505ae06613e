"""Model registry: every model is created by name with the same call."""

import dataclasses
import functools

import flax.linen as nn
import jax.numpy as jnp

from bird_jax.models import efficientnet, mobilenet
from bird_jax.models.common import Dtype
from bird_jax.models.convnet import ConvNet
from bird_jax.models.convnext import ARCHITECTURES, ConvNeXt
from bird_jax.models.lightweight import LightweightCNN
from bird_jax.models.resnet import ARCHITECTURES as RESNETS
from bird_jax.models.resnet import ResNet
from bird_jax.models.vgg import CONVS_PER_STAGE, VGG
from bird_jax.models.vit import ARCHITECTURES as VITS
from bird_jax.models.vit import ViT

# name -> Module class with its architecture bound; create_model adds the user's kwargs.
_MODELS: dict[str, functools.partial[nn.Module]] = {
    **{
        name: functools.partial(VGG, convs_per_stage=convs)
        for name, convs in CONVS_PER_STAGE.items()
    },
    "lightweight_cnn": functools.partial(LightweightCNN),
    "convnet": functools.partial(ConvNet),
    **{
        f"convnext_{size}": functools.partial(ConvNeXt, depths=depths, dims=dims)
        for size, (depths, dims) in ARCHITECTURES.items()
    },
    "mobilenet_v2": functools.partial(
        mobilenet.MobileNetV2, stages=mobilenet.STAGES, stem_width=32, final_width=1280
    ),
    **{
        f"efficientnet_{size}": functools.partial(efficientnet.EfficientNet, **architecture)
        for size, architecture in efficientnet.ARCHITECTURES.items()
    },
    **{
        name: functools.partial(ResNet, block=block, depths=depths)
        for name, (block, depths) in RESNETS.items()
    },
    **{
        f"vit_{size}": functools.partial(
            ViT, patch_size=16, width=width, depth=depth, num_heads=heads
        )
        for size, (width, depth, heads) in VITS.items()
    },
}


def list_models() -> list[str]:
    """Sorted names accepted by `create_model`."""
    return sorted(_MODELS)


def model_kwargs(name: str) -> list[str]:
    """Sorted keyword arguments that `create_model(name, ...)` accepts besides num_classes/dtype."""
    constructor = _get(name)
    fixed = {"parent", "name", "num_classes", "dtype", *constructor.keywords}
    return sorted(f.name for f in dataclasses.fields(constructor.func) if f.name not in fixed)


def create_model(name: str, *, num_classes: int, dtype: Dtype = jnp.float32, **kwargs) -> nn.Module:
    """Builds model `name` with `num_classes` logits and compute dtype `dtype` (params float32).

    Raises ValueError for an unknown name or a keyword argument the model does not take.
    """
    allowed = model_kwargs(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(
            f"Model {name!r} got unexpected keyword argument(s) {unknown}; it accepts {allowed}."
        )
    return _get(name)(num_classes=num_classes, dtype=dtype, **kwargs)


def create_variant(
    name: str, *, num_classes: int, dtype: Dtype = jnp.float32, **architecture
) -> nn.Module:
    """Model `name` with parts of its bound architecture replaced (e.g. ConvNeXt depths/dims):
    the tiny versions that tests and the reference fixtures build."""
    return _get(name)(num_classes=num_classes, dtype=dtype, **architecture)


def _get(name: str) -> functools.partial[nn.Module]:
    if name not in _MODELS:
        raise ValueError(f"Unknown model {name!r}; known models: {', '.join(list_models())}.")
    return _MODELS[name]
