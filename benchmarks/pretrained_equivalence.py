"""Converted weights give the reference framework's logits, at full size.

  python benchmarks/pretrained_equivalence.py --model=resnet50 \
      --torch_python=/tmp/benchvenv/bin/python [--reference=timm] [--weights=PATH]

The reference side (this file, run by `--torch_python` with `--torch_side`; it needs torch,
torchvision, timm, transformers and safetensors, no JAX) builds the reference model of `--model`
(`REFERENCES`), with every parameter and BatchNorm statistic drawn at random as the test
fixtures' (`tests/fixtures/make_pretrained_fixtures.py`) unless `--weights` names a checkpoint
(a Hugging Face one: the folder save_pretrained wrote). It runs a random batch in eval mode and
writes the weights as the library saves them, the images and its logits to a temporary folder.
This side reads the weights with `bird_jax.pretrained`, converts them onto the registry model
and prints the largest |logit difference| beside the largest |logit|.
"""

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
# registry model -> {library: (its name, overrides of our model to match it)}; the first
# library is the default reference.
REFERENCES = {
    **{
        f"resnet{depth}": {"torchvision": (f"resnet{depth}", {}), "timm": (f"resnet{depth}", {})}
        for depth in (18, 34, 50, 101)
    },
    "vit_ti16": {"timm": ("vit_tiny_patch16_224", {})},
    "vit_s16": {"timm": ("vit_small_patch16_224", {})},
    "vit_b16": {
        "timm": ("vit_base_patch16_224", {}),
        # transformers' ViTConfig defaults are this checkpoint's, layer_norm_eps 1e-12 included.
        "hf": ("google/vit-base-patch16-224", {"layer_norm_epsilon": 1e-12}),
    },
}
# Flags the torch side gets too.
_SHARED = ("model", "reference", "weights", "image_size", "batch_size")


def _reference_module(library: str, name: str, weights: str | None):
    """The torch model, its weights loaded from `weights` or drawn at random."""
    import torch

    sys.path.insert(0, str(ROOT))
    from tests.fixtures.make_pretrained_fixtures import randomize

    if library == "hf":
        from transformers import ViTConfig, ViTForImageClassification

        if weights:
            return ViTForImageClassification.from_pretrained(weights)
        module = ViTForImageClassification(ViTConfig())
        randomize(module)
        return module
    state, num_classes = None, 1000
    if weights:
        from safetensors.torch import load_file

        state = (
            load_file(weights)
            if weights.endswith(".safetensors")
            else torch.load(weights, map_location="cpu", weights_only=True)
        )
        num_classes = next(state[k].shape[0] for k in ("fc.weight", "head.weight") if k in state)
    if library == "timm":
        import timm

        module = timm.create_model(name, pretrained=False, num_classes=num_classes)
    else:
        import torchvision

        module = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    if state is None:
        randomize(module)
    else:
        module.load_state_dict(state)
    return module


def torch_side(args: argparse.Namespace) -> None:
    """Writes the weights, images.npy (NHWC), logits.npy and reference.json (where the weights
    are, library versions) into `args.out`."""
    import torch

    torch.set_grad_enabled(False)
    name, _ = REFERENCES[args.model][args.reference]
    module = _reference_module(args.reference, name, args.weights).eval()
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=generator)
    logits = module(images)
    logits = getattr(logits, "logits", logits)
    out = pathlib.Path(args.out)
    if args.weights:
        weights = pathlib.Path(args.weights)
        weights = weights / "model.safetensors" if weights.is_dir() else weights
    elif args.reference == "hf":
        module.save_pretrained(out)
        weights = out / "model.safetensors"
    else:
        from safetensors.torch import save_file

        weights = out / "weights.safetensors"
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(weights))
    np.save(out / "images.npy", images.permute(0, 2, 3, 1).numpy())
    np.save(out / "logits.npy", logits.numpy())
    from tests.fixtures.make_pretrained_fixtures import versions

    meta = {"weights": str(weights), "versions": versions()}
    (out / "reference.json").write_text(json.dumps(meta))


def our_side(args: argparse.Namespace) -> None:
    """Runs the torch side, converts its weights and prints the largest logit difference."""
    import flax
    import jax

    from bird_jax.models import registry
    from bird_jax.pretrained import files, mapping

    with tempfile.TemporaryDirectory() as folder:
        command = [args.torch_python, __file__, "--torch_side", f"--out={folder}"]
        command += [f"--{k}={v}" for k, v in vars(args).items() if k in _SHARED and v is not None]
        subprocess.run(command, check=True, cwd=ROOT)
        folder = pathlib.Path(folder)
        images, expected = np.load(folder / "images.npy"), np.load(folder / "logits.npy")
        meta = json.loads((folder / "reference.json").read_text())
        state = files.read_state(meta["weights"])
    _, overrides = REFERENCES[args.model][args.reference]
    model = registry.create_variant(args.model, num_classes=expected.shape[-1], **overrides)
    template = jax.eval_shape(lambda: model.init(jax.random.key(0), images[:1]))
    conversion = mapping.convert_state(state, args.model, template)
    logits = jax.jit(lambda v, x: model.apply(v, x))(conversion.apply_to(template), images)
    diff = float(np.max(np.abs(np.asarray(logits) - expected)))
    ours = {"jax": jax.__version__, "flax": flax.__version__}
    print(", ".join(f"{k} {v}" for k, v in {**ours, **meta["versions"]}.items()))
    print(
        f"{args.model} vs {args.reference} {REFERENCES[args.model][args.reference][0]} "
        f"({conversion.format}, {args.weights or 'random weights'}, {args.image_size} px, "
        f"batch {args.batch_size}, jax {jax.default_backend()}): max |logit diff| {diff:.3g}, "
        f"max |logit| {float(np.max(np.abs(expected))):.3g}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, choices=sorted(REFERENCES))
    parser.add_argument("--reference", help="Library of the reference; the model's first.")
    parser.add_argument("--weights", help="A checkpoint of the reference instead of random.")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--torch_python", default=sys.executable, help="Python with torch.")
    parser.add_argument("--torch_side", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    libraries = REFERENCES[args.model]
    args.reference = args.reference or next(iter(libraries))
    if args.reference not in libraries:
        parser.error(f"--reference for {args.model} must be one of {sorted(libraries)}.")
    (torch_side if args.torch_side else our_side)(args)


if __name__ == "__main__":
    main()
