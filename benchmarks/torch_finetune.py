"""PyTorch/torchvision twin of `configs/finetune.py:<model>`: the reference for
`benchmarks/finetune_cub20.py`, which calls it with the same data, epochs and weights.

Needs torch, torchvision, numpy and pillow (no JAX, no bird_jax), so it runs in a side venv;
EfficientNet-Lite0's PyTorch code is the PyPI package efficientnet_lite_pytorch (--no-deps):

  python benchmarks/torch_finetune.py --model=mobilenet_v2 --weights=mobilenet_v2-b0353104.pth \
      --data=/tmp/cub20 --epochs=10 [--probe]

The recipe is bird_jax's: RandomResizedCrop(224, scale=(0.35, 1)) + horizontal flip, ImageNet
mean/std; AdamW (lr 1e-3 at batch 32, betas 0.9/0.999, eps 1e-8, weight decay 0.05 on matrices
and conv kernels only), linear warmup from 0 over 2 epochs then cosine to 1e-6, per step; label
smoothing 0.1; gradient norm clipped at 1.0; dropout 0.2; BatchNorm momentum 0.1 (torch's
convention; Lite0's code would use 0.01); a new head for the dataset's classes.
`--probe` trains the head alone (lr 1e-2, no weight decay or smoothing, BatchNorm in eval mode).
Evaluation: resize the shorter side to 256, centre crop 224 (bilinear; bicubic for
efficientnet_lite0, as its bird_jax recipe), on the test split with the final weights.
Decoding runs in the training process (DataLoader num_workers=0), as bird_jax's default.
Prints one JSON line: test top-1 and macro-F1, train images/s (steps after the first), wall time.
"""

import argparse
import json
import math
import pathlib
import sys
import time

import numpy as np
import torch
import torchvision
from torch import nn
from torchvision import transforms

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def build_model(name: str, weights: str, num_classes: int) -> nn.Module:
    """The torchvision/lite0 model with ImageNet weights and a new `num_classes` head."""
    state = torch.load(weights, map_location="cpu", weights_only=True)
    if name == "mobilenet_v2":
        model = torchvision.models.mobilenet_v2()
        model.load_state_dict(state)
        model.classifier[1] = nn.Linear(model.classifier[1].in_features, num_classes)
        return model
    if name == "efficientnet_lite0":  # pip install --no-deps efficientnet_lite_pytorch
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_name("efficientnet-lite0", drop_connect_rate=0.0)
        model.load_state_dict(state)
        model._fc = nn.Linear(model._fc.in_features, num_classes)
        for module in model.modules():  # bird_jax's BatchNorm momentum (TF's 0.99 there)
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = 0.1
        return model
    raise SystemExit(f"Unknown model {name!r}: mobilenet_v2 or efficientnet_lite0.")


def macro_f1(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> float:
    scores = []
    for c in range(num_classes):
        tp = np.sum((predictions == c) & (labels == c))
        fp = np.sum((predictions == c) & (labels != c))
        fn = np.sum((predictions != c) & (labels == c))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(scores))


def schedule(step: int, peak: float, warmup: int, total: int, end: float = 1e-6) -> float:
    """optax.warmup_cosine_decay_schedule(0, peak, warmup, total, end) at `step`."""
    if step < warmup:
        return peak * step / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return end + (peak - end) * 0.5 * (1 + math.cos(math.pi * progress))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--epochs", type=float, default=30.0)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--probe", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    interpolation = (
        transforms.InterpolationMode.BICUBIC
        if args.model == "efficientnet_lite0"
        else transforms.InterpolationMode.BILINEAR
    )
    train_set = torchvision.datasets.ImageFolder(
        pathlib.Path(args.data) / "train",
        transforms.Compose([
            transforms.RandomResizedCrop(224, scale=(0.35, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]),
    )  # fmt: skip
    test_set = torchvision.datasets.ImageFolder(
        pathlib.Path(args.data) / "test",
        transforms.Compose([
            transforms.Resize(256, interpolation=interpolation),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]),
    )  # fmt: skip
    num_classes = len(train_set.classes)
    model = build_model(args.model, args.weights, num_classes)
    head = model.classifier[-1] if args.model == "mobilenet_v2" else model._fc
    if args.probe:
        for p in model.parameters():
            p.requires_grad_(False)
        for p in head.parameters():
            p.requires_grad_(True)
    trained = [p for p in model.parameters() if p.requires_grad]
    peak = 1e-2 if args.probe else 1e-3
    decay = 0.0 if args.probe else 0.05
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in trained if p.ndim > 1], "weight_decay": decay},
            {"params": [p for p in trained if p.ndim <= 1], "weight_decay": 0.0},
        ],
        lr=peak,
        betas=(0.9, 0.999),
        eps=1e-8,
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.0 if args.probe else 0.1)
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=0
    )
    steps_per_epoch = len(train_set) // args.batch_size
    total = max(1, int(args.epochs * steps_per_epoch))
    warmup = min(int(2 * steps_per_epoch), total - 1)

    start = time.perf_counter()
    step, timed_from, timed_images = 0, None, 0
    while step < total:
        for images, labels in loader:
            if step >= total:
                break
            model.train()
            if args.probe:
                model.eval()  # BatchNorm statistics frozen, as finetune.batch_norm="frozen"
            for group in optimizer.param_groups:
                group["lr"] = schedule(step, peak, warmup, total)
            loss = loss_fn(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
            optimizer.step()
            step += 1
            if step == 1:
                timed_from = time.perf_counter()
            else:
                timed_images += len(images)
            if step % 20 == 0:
                rate = timed_images / (time.perf_counter() - timed_from)
                print(f"step {step}/{total} loss {loss.item():.3f} {rate:.1f} img/s",
                      file=sys.stderr, flush=True)  # fmt: skip
    train_s = time.perf_counter() - timed_from
    model.eval()
    predictions, truths = [], []
    with torch.no_grad():
        for images, labels in torch.utils.data.DataLoader(test_set, batch_size=64):
            predictions.append(model(images).argmax(-1).numpy())
            truths.append(labels.numpy())
    predictions, truths = np.concatenate(predictions), np.concatenate(truths)
    print(json.dumps({
        "framework": f"torch {torch.__version__}",
        "model": args.model,
        "mode": "probe" if args.probe else "finetune",
        "steps": total,
        "test_top1": float(np.mean(predictions == truths)),
        "test_macro_f1": macro_f1(truths, predictions, num_classes),
        "train_images_per_s": timed_images / train_s,
        "wall_s": time.perf_counter() - start,
        "threads": torch.get_num_threads(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
