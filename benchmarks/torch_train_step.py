"""PyTorch (timm) twin of bird_jax's train step, timed like `train_step_throughput.py` times ours.

Needs only torch, timm and numpy (no JAX, no bird_jax), so it runs in a separate venv;
`train_step_throughput.py --torch_python=...` calls it once per configuration and reads the JSON
line it prints. It can also run on its own:

  python benchmarks/torch_train_step.py --model=convnext_tiny --precision=bfloat16 \
      --image_size=224 --batch_size=64 --device=cuda --compile --channels_last

The models mirror bird_jax's registry defaults: `vgg16` (no BatchNorm, dense head on the
flattened feature map), `lightweight_cnn` (MobileNetV2-style inverted residuals) and
`convnext_tiny` (timm's own, drop path 0, layer scale 1e-6), with the same parameter counts.

One step, as ours: uint8 NHWC images already on the device -> float, ImageNet mean/std on the
device -> forward in train mode (bfloat16: autocast, float32 parameters) -> cross-entropy ->
backward per micro-batch (loss / k) -> clip the global gradient norm at 1.0 -> AdamW (lr 1e-3,
betas 0.9/0.999, weight decay 0.05 on matrices and conv kernels only, as our decay mask) ->
zero_grad(set_to_none=True). float32 on CUDA lets matmuls use TF32
(`set_float32_matmul_precision("high")`), as JAX does by default. `--compile` compiles the model
(timm's recipe); the loss, backward and the (fused) optimizer run eagerly.

Timing: `--warmup` untimed steps (the first, with any compilation, is reported as compile_s),
then `--repeats` windows of `--steps_per_repeat` steps, each closed by torch.cuda.synchronize()
on GPU. Prints one JSON line on stdout; progress goes to stderr.
"""

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import timm
import torch
import torch.nn.functional as F
from machine import (
    cpu_model,
    load_average,
    throughput_fields,
    usable_cores,
)  # benchmarks/machine.py
from torch import nn

MODELS = ("vgg16", "lightweight_cnn", "convnext_tiny")
PRECISIONS = ("float32", "bfloat16")
MEAN = (0.485, 0.456, 0.406)  # bird_jax.config data.mean / data.std
STD = (0.229, 0.224, 0.225)
VGG_WIDTHS = (64, 128, 256, 512, 512)


def _float32_head(head: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """The classifier in float32 even under autocast, as bird_jax's `classifier`."""
    with torch.autocast(x.device.type, enabled=False):
        return head(x.float())


def _init_weights(module: nn.Module) -> None:
    """bird_jax's VGG/lightweight init: He fan-out convs, N(0, 0.01) dense, zero biases."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.01)
    if isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
        nn.init.zeros_(module.bias)


class VGG(nn.Module):
    """bird_jax.models.vgg.VGG without BatchNorm: 3x3 conv + ReLU stages, 2x2 max pools, a
    dense head on the flattened (image_size / 32)^2 x 512 map, dropout 0.5."""

    def __init__(
        self,
        num_classes: int,
        image_size: int,
        convs_per_stage: Sequence[int] = (2, 2, 3, 3, 3),
        head_width: int = 4096,
        dropout_rate: float = 0.5,
    ) -> None:
        super().__init__()
        if image_size < 32:
            raise ValueError(f"VGG needs images of at least 32 px, got {image_size}.")
        layers: list[nn.Module] = []
        channels = 3
        for width, num_convs in zip(VGG_WIDTHS, convs_per_stage, strict=True):
            for _ in range(num_convs):
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
                channels = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        side = image_size // 32
        self.hidden = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * side * side, head_width),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout_rate),
            nn.Linear(head_width, head_width),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout_rate),
        )
        self.head = nn.Linear(head_width, num_classes)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _float32_head(self.head, self.hidden(self.features(x)))


def _conv_bn(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    """Bias-free conv + BatchNorm (flax momentum 0.9 = torch 0.1, eps 1e-5) [+ ReLU6]."""
    layers = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch, eps=1e-5, momentum=0.1),
    ]
    return nn.Sequential(*layers, *([nn.ReLU6(inplace=True)] if act else []))


class InvertedResidual(nn.Module):
    """1x1 expand (none at expansion 1) -> 3x3 depthwise -> linear 1x1 project [+ skip]."""

    def __init__(self, in_ch: int, out_ch: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = in_ch * expansion
        expand = [_conv_bn(in_ch, hidden, 1)] if expansion != 1 else []
        self.block = nn.Sequential(
            *expand,
            _conv_bn(hidden, hidden, 3, stride, groups=hidden),
            _conv_bn(hidden, out_ch, 1, act=False),
        )
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class LightweightCNN(nn.Module):
    """bird_jax's LightweightCNN with its defaults (262,762 parameters at 10 classes)."""

    def __init__(
        self,
        num_classes: int,
        stem_width: int = 16,
        stage_widths: Sequence[int] = (16, 24, 40, 80, 112),
        stage_depths: Sequence[int] = (1, 2, 2, 3, 1),
        stage_strides: Sequence[int] = (1, 2, 2, 2, 1),
        stage_expansions: Sequence[int] = (1, 4, 4, 4, 4),
        head_features: int = 256,
        dropout_rate: float = 0.2,
    ) -> None:
        super().__init__()
        layers = [_conv_bn(3, stem_width, 3, stride=2)]
        channels = stem_width
        stages = zip(stage_widths, stage_depths, stage_strides, stage_expansions, strict=True)
        for width, depth, stride, expansion in stages:
            for i in range(depth):
                layers.append(InvertedResidual(channels, width, expansion, stride if i == 0 else 1))
                channels = width
        layers.append(_conv_bn(channels, head_features, 1))
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout_rate)
        self.head = nn.Linear(head_features, num_classes)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.features(x).float().mean(dim=(2, 3))  # pooled in float32, as ours
        return _float32_head(self.head, self.dropout(pooled))


def build_model(name: str, num_classes: int, image_size: int) -> nn.Module:
    """The PyTorch model that mirrors bird_jax's registry model `name` (default kwargs)."""
    if name == "vgg16":
        return VGG(num_classes, image_size)
    if name == "lightweight_cnn":
        return LightweightCNN(num_classes)
    if name == "convnext_tiny":
        return timm.create_model("convnext_tiny", num_classes=num_classes, drop_path_rate=0.0)
    raise ValueError(f"Unknown model {name!r}; known: {', '.join(MODELS)}.")


def make_optimizer(model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """AdamW with our hyper-parameters; weight decay only on tensors of rank > 1 (our mask)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": 0.05},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.999), fused=device.type == "cuda")


def make_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    precision: str,
    grad_accum_steps: int,
    channels_last: bool,
) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One update from uint8 NHWC images and int64 labels, both already on `device`."""
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    use_bf16 = precision == "bfloat16"

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        # NHWC -> NCHW view (channels_last strides); normalised in float32 on the device.
        x = images.permute(0, 3, 1, 2).float().contiguous(memory_format=memory_format)
        x = (x / 255.0 - mean) / std
        for x_micro, y_micro in zip(
            x.chunk(grad_accum_steps), labels.chunk(grad_accum_steps), strict=True
        ):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                logits = model(x_micro)
            loss = F.cross_entropy(logits.float(), y_micro) / grad_accum_steps
            loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line flags; rejects settings that would time nothing or not split."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, choices=MODELS)
    parser.add_argument("--precision", default="float32", choices=PRECISIONS)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--num_classes", type=int, default=10)
    parser.add_argument("--grad_accum_steps", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps_per_repeat", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--channels_last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model.")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=0, help="0: all usable cores.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.warmup < 1:
        parser.error("--warmup must be >= 1: the first step compiles.")
    if min(args.repeats, args.steps_per_repeat, args.batch_size, args.num_classes) < 1:
        parser.error("--repeats, --steps_per_repeat, --batch_size, --num_classes must be >= 1.")
    if args.grad_accum_steps < 1 or args.batch_size % args.grad_accum_steps:
        parser.error(
            f"--batch_size={args.batch_size} must split into --grad_accum_steps="
            f"{args.grad_accum_steps} equal micro-batches."
        )
    if args.threads < 0:
        parser.error("--threads must be >= 0.")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device=cuda but torch.cuda.is_available() is False.")
    return args


def run_steps(step: Callable, batch: tuple[torch.Tensor, torch.Tensor], num_steps: int) -> float:
    """Runs `num_steps` steps and waits for the device; returns the seconds taken."""
    device = batch[0].device
    start = time.perf_counter()
    for _ in range(num_steps):
        step(*batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Builds the model and step, times them and returns the JSON record."""
    torch.set_num_threads(args.threads or usable_cores())
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32, as JAX's default on GPU
        torch.backends.cudnn.benchmark = True
    load_before = load_average()
    model = build_model(args.model, args.num_classes, args.image_size).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    num_params = sum(p.numel() for p in model.parameters())
    optimizer = make_optimizer(model, device)
    forward = torch.compile(model) if args.compile else model
    step = make_step(
        forward,
        optimizer,
        device=device,
        precision=args.precision,
        grad_accum_steps=args.grad_accum_steps,
        channels_last=args.channels_last,
    )
    rng = np.random.default_rng(args.seed)
    shape = (args.batch_size, args.image_size, args.image_size, 3)
    batch = (
        torch.from_numpy(rng.integers(0, 256, shape, dtype=np.uint8)).to(device),
        torch.from_numpy(rng.integers(0, args.num_classes, args.batch_size)).to(device),
    )
    name = f"torch {args.model}/{args.precision}/{args.image_size}px/accum {args.grad_accum_steps}"
    print(f"{name}: {num_params / 1e6:.2f} M params, first step.", file=sys.stderr, flush=True)
    compile_s = run_steps(step, batch, 1)
    run_steps(step, batch, args.warmup - 1)
    throughputs = []
    for window in range(args.repeats):
        seconds = run_steps(step, batch, args.steps_per_repeat)
        throughputs.append(args.steps_per_repeat * args.batch_size / seconds)
        print(f"{name}: window {window}: {throughputs[-1]:.1f} images/s.", file=sys.stderr)
    return {
        "framework": "torch",
        "model": args.model,
        "precision": args.precision,
        "params": num_params,
        "compile_s": round(compile_s, 2),
        **throughput_fields(throughputs, args.batch_size),
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "num_classes": args.num_classes,
        "grad_accum_steps": args.grad_accum_steps,
        "repeats": args.repeats,
        "steps_per_repeat": args.steps_per_repeat,
        "channels_last": args.channels_last,
        "compiled": "model" if args.compile else "none",
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "torch_version": torch.__version__,
        "timm_version": timm.__version__,
        "threads": torch.get_num_threads(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }


def main(argv: list[str]) -> None:
    print(json.dumps(benchmark(parse_args(argv))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
