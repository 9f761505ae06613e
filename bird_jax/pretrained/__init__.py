"""Pretrained weights from PyTorch, timm, torchvision and Hugging Face files, read without
executing code and mapped onto bird_jax models.

  state = files.read_state("convnext_tiny.safetensors")
  conversion = mapping.convert_state(state, "convnext_tiny", jax.eval_shape(model.init, ...))
  variables = conversion.apply_to(model.init(...))

Each family's formats register themselves in its module, imported here.
"""

from bird_jax.pretrained import (  # noqa: F401  (register their formats)
    convnext,
    efficientnet,
    mobilenet,
    resnet,
    vgg,
    vit,
)
