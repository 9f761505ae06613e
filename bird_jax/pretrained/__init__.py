"""Pretrained weights from PyTorch, timm, torchvision and Hugging Face files, read without
executing code and mapped onto bird_jax models.

  state = files.read_state("convnext_tiny.safetensors")
  conversion = mapping.convert_state(state, "convnext_tiny", jax.eval_shape(model.init, ...))
  variables = conversion.apply_to(model.init(...))

Each family's formats register themselves in its module, imported here.
"""

from bird_jax.pretrained import convnext, efficientnet, mobilenet, vgg  # noqa: F401  (formats)
