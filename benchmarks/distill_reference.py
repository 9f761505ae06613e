"""The official PyTorch dataset distillation code as the reference for bird_jax's DC, DSA and DM.

Imports VICO-UoE/DatasetCondensation (Zhao et al., MIT licence; not vendored: clone it and pass
`--reference_repo`) and runs its own functions (`get_network`, `evaluate_synset`, `DiffAugment`,
`ParamDiffAug`, `match_loss`, `epoch`, `get_loops`); only the loop bodies that live in `main.py`
(DC/DSA) and `main_DM.py` (DM) are copied here, statement for statement. Needs torch,
torchvision, numpy, pillow and scipy (the official `utils.py` imports it), no JAX, no bird_jax.

  evaluate     test accuracy of a distilled set written by bird_jax (DIR/synthetic.npz: float32
               NHWC `images` in normalised space and int32 `labels`; DIR/labels.json: class_names,
               mean, std) trained by the official `evaluate_synset` on fresh ConvNets.
  make-random  `--ipc` random real training images per class, picked the official `get_images`
               way, written in that same format, so both sides evaluate the identical set.
  speed        iterations/s of the official distillation loop (one outer iteration `it`).
  parts        seconds of the two pieces every iteration is made of, on random inputs: the
               forward pass of the official ConvNet over 10 x 256 images (DM's work), and each
               class's parameter gradients on its 256 (DC/DSA's real side).
  mtt-step     seconds of one MTT matching step on random images, as the official
               mtt-distillation `distill.py` loop does it (no DSA): `--syn_steps` SGD steps of the
               official ConvNet from flat parameters (`torch.autograd.grad(...,
               create_graph=True)`; torch.func.functional_call stands for its ReparamModule),
               the normalised parameter distance, and its backward pass to the images and the
               step size.

CIFAR-10 comes from a JPEG folder (`<data>/{train,test}/<class>/*.jpg`, classes in sorted folder
order, files in sorted name order), decoded once and cached as uint8 in `--cache`. Images are
normalised as the official `get_dataset`: ToTensor (x/255) then Normalize with the official
CIFAR-10 mean/std. Each result is one JSON line on stdout (with the machine, torch version and
the official commit); progress and the official code's own prints go to stderr.

Seeding: the official `get_network` reseeds torch's global RNG from the clock
(`int(time.time() * 1000) % 100000`) on every call, so its networks are never reproducible.
`evaluate` therefore reseeds torch and numpy with the run's seed right after `get_network` and
re-runs every module's `reset_parameters` (the same draws in the same order as constructing the
network under that seed), which makes each run's initialisation, shuffling and augmentation
reproducible. `speed` keeps the official clock seeds (timing does not depend on them). The
official Siamese augmentations fail on a batch of one with current PyTorch (IPC 1); see
`allow_siamese_batch_of_one` for the equivalent workaround.

  python benchmarks/distill_reference.py make-random --data=/tmp/cifar10-jpeg --ipc=10 --out=D
  python benchmarks/distill_reference.py evaluate --synset=D --data=/tmp/cifar10-jpeg --runs=3
  python benchmarks/distill_reference.py speed --method=dm --ipc=10 --iterations=20
"""

import argparse
import contextlib
import copy
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from machine import (  # benchmarks/machine.py
    cpu_model,
    load_average,
    repeat_seconds,
    usable_cores,
)
from PIL import Image
from torch import nn

MEAN = [0.4914, 0.4822, 0.4465]  # the official get_dataset('CIFAR10')
STD = [0.2023, 0.1994, 0.2010]
CHANNELS, IM_SIZE, NUM_CLASSES = 3, (32, 32), 10
DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"  # the official choice for CIFAR-10
CACHE_VERSION = 1


def log(message: str) -> None:
    """Progress to stderr (stdout holds only the JSON results)."""
    print(message, file=sys.stderr, flush=True)


def emit(record: dict[str, Any]) -> None:
    """One result as one JSON line on stdout."""
    print(json.dumps(record), flush=True)


def import_reference(repo: Path) -> ModuleType:
    """The official `utils` module (which imports the official `networks`)."""
    if not (repo / "utils.py").is_file() or not (repo / "main_DM.py").is_file():
        sys.exit(
            f"{repo} is not a checkout of VICO-UoE/DatasetCondensation; see benchmarks/README.md"
        )
    sys.path.insert(0, str(repo))
    utils = importlib.import_module("utils")
    if Path(utils.__file__).resolve().parent != repo.resolve():
        sys.exit(f"imported {utils.__file__} instead of {repo}/utils.py")
    allow_siamese_batch_of_one(utils)
    return utils


def allow_siamese_batch_of_one(utils: ModuleType) -> None:
    """Let the official Siamese DiffAugment take a batch of one (the synthetic batch at IPC 1).

    Each official augmentation shares the first image's parameters with `t[:] = t[0]`; with one
    image that copies a tensor onto itself, which PyTorch >= 1.x refuses ("some elements of the
    input tensor and the written-to tensor refer to a single memory location"; the official code
    targets torch 1.2, see VICO-UoE/DatasetCondensation#20). For a batch of one that line is a
    no-op and the random draws do not depend on it, so each function is called with
    `param.Siamese = False` instead: the same seeds, draws and output.
    """

    def batch_of_one_safe(fn: Any) -> Any:
        def wrapped(x: torch.Tensor, param: Any) -> torch.Tensor:
            if x.shape[0] != 1 or not param.Siamese:
                return fn(x, param)
            param.Siamese = False
            try:
                return fn(x, param)
            finally:
                param.Siamese = True

        wrapped.__name__ = fn.__name__
        return wrapped

    for name, fns in utils.AUGMENT_FNS.items():
        utils.AUGMENT_FNS[name] = [batch_of_one_safe(fn) for fn in fns]


def reference_commit(repo: Path) -> str:
    """The official checkout's commit, or 'unknown' if it is not a git work tree."""
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def machine_fields(args: argparse.Namespace) -> dict[str, Any]:
    """What every result line says about where and against what it ran."""
    return {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "threads": torch.get_num_threads(),
        "device": args.device,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "reference_repo": str(args.reference_repo),
        "reference_commit": reference_commit(args.reference_repo),
        "load_average": load_average(),
    }


def stats(values: list[float], digits: int = 4) -> dict[str, Any]:
    """Median, min, max and all values."""
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "all": [round(v, digits) for v in values],
    }


# ---------------------------------------------------------------------------------------- data


def _decode_split(root: Path, class_names: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """uint8 [N, 32, 32, 3] images, int64 labels and relative file names of one split folder."""
    files = [
        (label, path)
        for label, name in enumerate(class_names)
        for path in sorted((root / name).glob("*.jpg"))
    ]
    images = np.empty((len(files), *IM_SIZE, CHANNELS), np.uint8)
    for i, (_, path) in enumerate(files):
        with Image.open(path) as image:
            images[i] = np.asarray(image.convert("RGB"))
    labels = np.array([label for label, _ in files], np.int64)
    return images, labels, [str(path.relative_to(root.parent)) for _, path in files]


def load_cifar10(data: Path, cache: Path) -> dict[str, Any]:
    """CIFAR-10 from the JPEG folder, through the uint8 cache (rebuilt if it is for other data)."""
    data = data.resolve()
    class_names = sorted(d.name for d in (data / "train").iterdir() if d.is_dir())
    test_names = sorted(d.name for d in (data / "test").iterdir() if d.is_dir())
    if class_names != test_names or len(class_names) != NUM_CLASSES:
        sys.exit(f"{data}: train classes {class_names} and test classes {test_names} differ")
    if cache.is_file():
        with np.load(cache) as z:
            if (
                int(z["version"]) == CACHE_VERSION
                and str(z["source"]) == str(data)
                and z["class_names"].tolist() == class_names
            ):
                return {key: z[key] for key in z.files} | {"class_names": class_names}
        log(f"{cache} is for other data, rebuilding it")
    start = time.perf_counter()
    log(f"decoding {data} (once; cached in {cache})")
    train_x, train_y, train_files = _decode_split(data / "train", class_names)
    test_x, test_y, _ = _decode_split(data / "test", class_names)
    out = {
        "version": np.array(CACHE_VERSION),
        "source": np.array(str(data)),
        "class_names": np.array(class_names),
        "train_x": train_x,
        "train_y": train_y,
        "train_files": np.array(train_files),
        "test_x": test_x,
        "test_y": test_y,
    }
    tmp = cache.with_name(cache.name + f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **out)
    os.replace(tmp, cache)
    log(f"decoded {len(train_x)} + {len(test_x)} images in {time.perf_counter() - start:.1f} s")
    return out | {"class_names": class_names}


def normalise(images: np.ndarray, device: str = "cpu") -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW as the official ToTensor + Normalize(MEAN, STD)."""
    x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float().div(255)
    mean = torch.tensor(MEAN, device=device).view(1, -1, 1, 1)
    std = torch.tensor(STD, device=device).view(1, -1, 1, 1)
    return x.sub(mean).div(std).contiguous()


def class_indices(labels: np.ndarray) -> list[list[int]]:
    """The official `indices_class`: training indices of each class in dataset order."""
    return [np.flatnonzero(labels == c).tolist() for c in range(NUM_CLASSES)]


# ----------------------------------------------------------------------------------- networks


def fresh_network(utils: ModuleType, model: str, seed: int, device: str) -> nn.Module:
    """`get_network` (clock-seeded), then reinitialised as if constructed under `seed`."""
    net = utils.get_network(model, CHANNELS, NUM_CLASSES, IM_SIZE)
    torch.manual_seed(seed)
    np.random.seed(seed)
    for module in net.modules():  # construction order for ConvNet
        if module is not net and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return net.to(device)


# ------------------------------------------------------------------------------------ evaluate


def read_synset(directory: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """bird_jax's distilled set: NHWC float32 images, int labels and labels.json."""
    with np.load(directory / "synthetic.npz") as z:
        images, labels = z["images"].astype(np.float32), z["labels"].astype(np.int64)
    meta = json.loads((directory / "labels.json").read_text())
    if images.ndim != 4 or images.shape[1:] != (*IM_SIZE, CHANNELS):
        sys.exit(f"synthetic images are {images.shape}, expected [N, 32, 32, 3] (NHWC)")
    if labels.shape != (len(images),):
        sys.exit(f"{len(labels)} labels for {len(images)} images")
    for key in ("class_names", "mean", "std"):
        if key not in meta:
            sys.exit(f"{directory}/labels.json has no {key!r}")
    return images, labels, meta


def to_official_space(images: np.ndarray, mean: list[float], std: list[float]) -> torch.Tensor:
    """NHWC images normalised with (mean, std) -> NCHW normalised with the official MEAN/STD."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    if mean == MEAN and std == STD:
        return x
    raw = x * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)
    return (raw - torch.tensor(MEAN).view(1, -1, 1, 1)) / torch.tensor(STD).view(1, -1, 1, 1)


def time_epochs(utils: ModuleType) -> dict[str, list[float]]:
    """Wrap the official `epoch` (which `evaluate_synset` calls) to time train and test apart."""
    timings: dict[str, list[float]] = {}
    official_epoch = utils.epoch

    def timed_epoch(mode: str, *args: Any, **kwargs: Any) -> tuple[float, float]:
        start = time.perf_counter()
        result = official_epoch(mode, *args, **kwargs)
        timings.setdefault(mode, []).append(time.perf_counter() - start)
        return result

    utils.epoch = timed_epoch
    return timings


def evaluate(args: argparse.Namespace) -> None:
    """Train fresh ConvNets on the distilled set with `evaluate_synset`; report test accuracy."""
    utils = import_reference(args.reference_repo)
    torch.set_num_threads(args.threads)
    data = load_cifar10(args.data, args.cache)
    images_np, labels_np, meta = read_synset(args.synset)
    if list(meta["class_names"]) != data["class_names"]:
        sys.exit(
            f"class order differs: labels.json {meta['class_names']} vs the test folders "
            f"{data['class_names']} (sorted folder names)"
        )
    if labels_np.min() < 0 or labels_np.max() >= NUM_CLASSES:
        sys.exit(f"labels outside 0..{NUM_CLASSES - 1}")
    mean, std = [float(v) for v in meta["mean"]], [float(v) for v in meta["std"]]
    images = to_official_space(images_np, mean, std)
    labels = torch.from_numpy(labels_np)
    renormalised = not (mean == MEAN and std == STD)

    test_x = normalise(data["test_x"])
    test_y = torch.from_numpy(data["test_y"])
    testloader = torch.utils.data.DataLoader(
        utils.TensorDataset(test_x, test_y), batch_size=256, shuffle=False, num_workers=0
    )
    dsa = not args.no_dsa
    ipc = int(np.bincount(labels_np, minlength=NUM_CLASSES).max())
    # main.py: 1000 epochs with DSA (or DC augmentation), 300 without; main_DM.py: always 1000.
    epochs = args.epochs if args.epochs is not None else (1000 if dsa else 300)
    ref = argparse.Namespace(
        lr_net=0.01,
        epoch_eval_train=epochs,
        batch_train=256,
        dsa=dsa,
        dsa_strategy=DSA_STRATEGY if dsa else "None",
        dsa_param=utils.ParamDiffAug(),
        dc_aug_param=None if dsa else utils.get_daparam("CIFAR10", args.model, args.model, ipc),
        device=args.device,
    )
    log(
        f"evaluate {args.synset}: {len(images)} images, {args.model}, {epochs} (+1) epochs, "
        f"dsa={dsa}, renormalised={renormalised}"
    )
    timings = time_epochs(utils)
    accs, seconds = [], []
    for run in range(args.runs):
        net = fresh_network(utils, args.model, run, args.device)
        timings.clear()
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):
            _, acc_train, acc_test = utils.evaluate_synset(
                run, net, images.clone(), labels.clone(), testloader, ref
            )
        elapsed = time.perf_counter() - start
        train_s, test_s = sum(timings.get("train", [])), sum(timings.get("test", []))
        accs.append(float(acc_test))
        seconds.append(elapsed)
        emit(
            {
                "kind": "evaluate_run",
                "synset": str(args.synset),
                "run": run,
                "seed": run,
                "test_acc": round(float(acc_test), 4),
                "train_acc_last_epoch": round(float(acc_train), 4),
                "seconds": round(elapsed, 2),
                "train_seconds": round(train_s, 2),
                "seconds_per_train_epoch": round(train_s / (epochs + 1), 4),
                "test_seconds": round(test_s, 2),
            }
        )
    emit(
        {
            "kind": "evaluate",
            "synset": str(args.synset),
            "method": meta.get("method"),
            "images": len(images),
            "ipc": ipc,
            "model": args.model,
            "dsa": dsa,
            "dsa_strategy": ref.dsa_strategy,
            "dc_aug_param": ref.dc_aug_param,
            "epochs": epochs,
            "epochs_trained": epochs + 1,
            "lr_net": 0.01,
            "batch_train": 256,
            "renormalised_from": None if not renormalised else {"mean": mean, "std": std},
            "runs": args.runs,
            "seeds": list(range(args.runs)),
            "test_acc": [round(a, 4) for a in accs],
            "test_acc_mean": round(float(np.mean(accs)), 4),
            "test_acc_std": round(float(np.std(accs)), 4),
            "seconds_per_run": stats(seconds, 2),
            "machine": machine_fields(args),
        }
    )


# --------------------------------------------------------------------------------- make-random


def make_random(args: argparse.Namespace) -> None:
    """`--ipc` random real training images per class, as the official `get_images` picks them."""
    data = load_cifar10(args.data, args.cache)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    indices_class = class_indices(data["train_y"])
    picked = np.concatenate(
        [np.random.permutation(indices_class[c])[: args.ipc] for c in range(NUM_CLASSES)]
    )
    images = np.ascontiguousarray(normalise(data["train_x"][picked]).permute(0, 2, 3, 1).numpy())
    labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.int32), args.ipc)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / "synthetic.npz", images=images, labels=labels)
    meta = {
        "class_names": data["class_names"],
        "mean": MEAN,
        "std": STD,
        "image_size": IM_SIZE[0],
        "method": "random",
        "ipc": args.ipc,
        "seed": args.seed,
        "selection": "np.random.permutation(indices_class[c])[:ipc] per class (official "
        "get_images), np.random.seed(seed)",
        "source_files": [str(f) for f in data["train_files"][picked]],
    }
    (args.out / "labels.json").write_text(json.dumps(meta, indent=1) + "\n")
    emit(
        {
            "kind": "make-random",
            "out": str(args.out),
            "ipc": args.ipc,
            "seed": args.seed,
            "images": list(images.shape),
            "train_indices": picked.tolist(),
        }
    )


# --------------------------------------------------------------------------------------- speed


def speed(args: argparse.Namespace) -> None:
    """Seconds per outer iteration of the official DM (main_DM.py) or DC/DSA (main.py) loop."""
    utils = import_reference(args.reference_repo)
    torch.set_num_threads(args.threads)
    data = load_cifar10(args.data, args.cache)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = args.device
    channel, im_size, num_classes = CHANNELS, IM_SIZE, NUM_CLASSES
    images_all = normalise(data["train_x"], device)  # the official images_all, on the device
    indices_class = class_indices(data["train_y"])

    def get_images(c: int, n: int) -> torch.Tensor:  # get random n images from class c
        idx_shuffle = np.random.permutation(indices_class[c])[:n]
        return images_all[idx_shuffle]

    DiffAugment = utils.DiffAugment  # noqa: N806 (the official spelling of the loop bodies)
    method = args.method
    dsa = method in ("dm", "dsa")
    lr_img = args.lr_img if args.lr_img is not None else (1.0 if method == "dm" else 0.1)
    a = argparse.Namespace(
        method={"dm": "DM", "dsa": "DSA", "dc": "DC"}[method],
        model=args.model,
        ipc=args.ipc,
        lr_img=lr_img,
        lr_net=0.01,
        batch_real=args.batch_real,
        batch_train=256,
        init=args.init,
        dsa=dsa,
        dsa_strategy=DSA_STRATEGY if dsa else "None",
        dsa_param=utils.ParamDiffAug(),
        dis_metric="ours",
        device=device,
        dc_aug_param=None,
    )
    # main_DM.py also calls get_loops, which exits for an IPC outside 1/10/20/30/40/50; DM
    # never uses the loops, so they are only looked up for DC/DSA here.
    a.outer_loop, a.inner_loop = utils.get_loops(a.ipc) if method != "dm" else (None, None)

    # initialize the synthetic data (the same in main.py and main_DM.py)
    image_syn = torch.randn(
        size=(num_classes * a.ipc, channel, im_size[0], im_size[1]),
        dtype=torch.float,
        requires_grad=True,
        device=device,
    )
    label_syn = torch.tensor(
        np.array([np.ones(a.ipc) * i for i in range(num_classes)]),
        dtype=torch.long,
        requires_grad=False,
        device=device,
    ).view(-1)
    if a.init == "real":
        for c in range(num_classes):
            image_syn.data[c * a.ipc : (c + 1) * a.ipc] = get_images(c, a.ipc).detach().data
    optimizer_img = torch.optim.SGD([image_syn], lr=a.lr_img, momentum=0.5)
    optimizer_img.zero_grad()
    criterion = nn.CrossEntropyLoss().to(device)

    def dm_iteration() -> float:
        """The body of main_DM.py's `for it in range(args.Iteration+1)` after evaluation."""
        net = utils.get_network(a.model, channel, num_classes, im_size).to(device)
        net.train()
        for param in list(net.parameters()):
            param.requires_grad = False
        embed = net.module.embed if torch.cuda.device_count() > 1 else net.embed
        loss_avg = 0
        if "BN" not in a.model:  # for ConvNet
            loss = torch.tensor(0.0).to(device)
            for c in range(num_classes):
                img_real = get_images(c, a.batch_real)
                img_syn = image_syn[c * a.ipc : (c + 1) * a.ipc].reshape(
                    (a.ipc, channel, im_size[0], im_size[1])
                )
                if a.dsa:
                    seed = int(time.time() * 1000) % 100000
                    img_real = DiffAugment(img_real, a.dsa_strategy, seed=seed, param=a.dsa_param)
                    img_syn = DiffAugment(img_syn, a.dsa_strategy, seed=seed, param=a.dsa_param)
                output_real = embed(img_real).detach()
                output_syn = embed(img_syn)
                loss += torch.sum(
                    (torch.mean(output_real, dim=0) - torch.mean(output_syn, dim=0)) ** 2
                )
        else:  # for ConvNetBN
            images_real_all, images_syn_all = [], []
            loss = torch.tensor(0.0).to(device)
            for c in range(num_classes):
                img_real = get_images(c, a.batch_real)
                img_syn = image_syn[c * a.ipc : (c + 1) * a.ipc].reshape(
                    (a.ipc, channel, im_size[0], im_size[1])
                )
                if a.dsa:
                    seed = int(time.time() * 1000) % 100000
                    img_real = DiffAugment(img_real, a.dsa_strategy, seed=seed, param=a.dsa_param)
                    img_syn = DiffAugment(img_syn, a.dsa_strategy, seed=seed, param=a.dsa_param)
                images_real_all.append(img_real)
                images_syn_all.append(img_syn)
            images_real_all = torch.cat(images_real_all, dim=0)
            images_syn_all = torch.cat(images_syn_all, dim=0)
            output_real = embed(images_real_all).detach()
            output_syn = embed(images_syn_all)
            loss += torch.sum(
                (
                    torch.mean(output_real.reshape(num_classes, a.batch_real, -1), dim=1)
                    - torch.mean(output_syn.reshape(num_classes, a.ipc, -1), dim=1)
                )
                ** 2
            )
        optimizer_img.zero_grad()
        loss.backward()
        optimizer_img.step()
        loss_avg += loss.item()
        loss_avg /= num_classes
        return loss_avg

    def dc_iteration() -> float:
        """The body of main.py's `for it in range(args.Iteration+1)` after evaluation."""
        net = utils.get_network(a.model, channel, num_classes, im_size).to(device)
        net.train()
        net_parameters = list(net.parameters())
        optimizer_net = torch.optim.SGD(net.parameters(), lr=a.lr_net)
        optimizer_net.zero_grad()
        loss_avg = 0
        a.dc_aug_param = None  # mute the DC augmentation in the inner loop, as main.py
        for ol in range(a.outer_loop):
            # freeze the running mu and sigma for BatchNorm layers (not in ConvNet)
            bn_flag = False
            bn_size_pc = 16
            for module in net.modules():
                if "BatchNorm" in module._get_name():
                    bn_flag = True
            if bn_flag:
                img_real = torch.cat([get_images(c, bn_size_pc) for c in range(num_classes)], dim=0)
                net.train()
                net(img_real)
                for module in net.modules():
                    if "BatchNorm" in module._get_name():
                        module.eval()

            # update synthetic data
            loss = torch.tensor(0.0).to(device)
            for c in range(num_classes):
                img_real = get_images(c, a.batch_real)
                lab_real = torch.ones((img_real.shape[0],), device=device, dtype=torch.long) * c
                img_syn = image_syn[c * a.ipc : (c + 1) * a.ipc].reshape(
                    (a.ipc, channel, im_size[0], im_size[1])
                )
                lab_syn = torch.ones((a.ipc,), device=device, dtype=torch.long) * c
                if a.dsa:
                    seed = int(time.time() * 1000) % 100000
                    img_real = DiffAugment(img_real, a.dsa_strategy, seed=seed, param=a.dsa_param)
                    img_syn = DiffAugment(img_syn, a.dsa_strategy, seed=seed, param=a.dsa_param)
                output_real = net(img_real)
                loss_real = criterion(output_real, lab_real)
                gw_real = torch.autograd.grad(loss_real, net_parameters)
                gw_real = list(_.detach().clone() for _ in gw_real)
                output_syn = net(img_syn)
                loss_syn = criterion(output_syn, lab_syn)
                gw_syn = torch.autograd.grad(loss_syn, net_parameters, create_graph=True)
                loss += utils.match_loss(gw_syn, gw_real, a)
            optimizer_img.zero_grad()
            loss.backward()
            optimizer_img.step()
            loss_avg += loss.item()
            if ol == a.outer_loop - 1:
                break

            # update network
            image_syn_train, label_syn_train = (
                copy.deepcopy(image_syn.detach()),
                copy.deepcopy(label_syn.detach()),
            )
            dst_syn_train = utils.TensorDataset(image_syn_train, label_syn_train)
            trainloader = torch.utils.data.DataLoader(
                dst_syn_train, batch_size=a.batch_train, shuffle=True, num_workers=0
            )
            for _ in range(a.inner_loop):
                utils.epoch("train", trainloader, net, optimizer_net, criterion, a, aug=a.dsa)
        loss_avg /= num_classes * a.outer_loop
        return loss_avg

    iteration = dm_iteration if method == "dm" else dc_iteration
    if method == "dm":
        definition = (
            "one outer iteration of main_DM.py (its loop body after evaluation): a fresh "
            f"randomly initialised {a.model} with frozen parameters; for each of the "
            f"{num_classes} classes {a.batch_real} random real images and the class's {a.ipc} "
            "synthetic images, each batch through DiffAugment with the same clock seed (one "
            "Siamese transform shared by the whole batch), net.embed, squared L2 distance of "
            f"the mean embeddings, summed over classes; one SGD step (lr {a.lr_img}, momentum "
            f"0.5) on all {num_classes * a.ipc} synthetic images"
        )
    else:
        aug = " after a shared Siamese DiffAugment" if dsa else ""
        definition = (
            "one outer iteration `it` of main.py (its loop body after evaluation): a fresh "
            f"randomly initialised {a.model}; outer_loop={a.outer_loop} times: for each class "
            f"{a.batch_real} real and {a.ipc} synthetic images{aug}, cross-entropy gradients "
            "w.r.t. all network parameters (create_graph for the synthetic ones), match_loss "
            f"'ours' summed over classes, one SGD step (lr {a.lr_img}, momentum 0.5) on the "
            f"synthetic images; between consecutive outer steps ({a.outer_loop - 1} times) "
            f"inner_loop={a.inner_loop} epochs of SGD (lr {a.lr_net}, batch {a.batch_train}) "
            "of the network on the synthetic set" + (" with per-image DiffAugment" if dsa else "")
        )
    log(f"{method} ipc {a.ipc}: 1 warm-up + {args.iterations} timed iterations, {definition}")
    seconds, losses = [], []
    for it in range(args.iterations + 1):
        start = time.perf_counter()
        loss_avg = iteration()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        warmup = " (warm-up)" if it == 0 else ""
        log(f"  iteration {it}{warmup}: {elapsed:.3f} s, loss {loss_avg:.4f}")
        losses.append(round(loss_avg, 5))
        if it > 0:
            seconds.append(elapsed)
    emit(
        {
            "kind": "speed",
            "method": method,
            "ipc": a.ipc,
            "model": a.model,
            "iteration": definition,
            "warmup_iterations": 1,
            "timed_iterations": len(seconds),
            "iterations_per_s": stats([1 / s for s in seconds]),
            "seconds_per_iteration": stats(seconds),
            "losses": losses,
            "hyperparameters": {
                "lr_img": a.lr_img,
                "lr_net": a.lr_net,
                "img_momentum": 0.5,
                "batch_real": a.batch_real,
                "batch_train": a.batch_train,
                "outer_loop": a.outer_loop,
                "inner_loop": a.inner_loop,
                "init": a.init,
                "dsa_strategy": a.dsa_strategy,
                "dsa_param": vars(utils.ParamDiffAug()),
                "dis_metric": a.dis_metric if method != "dm" else None,
            },
            "seed": args.seed,
            "machine": machine_fields(args),
        }
    )


def parts(args: argparse.Namespace) -> None:
    """Seconds of the official ConvNet's forward over 10 x 256 images and of 10 per-class
    parameter gradients (torch.autograd.grad, as main.py's real side), median of --repeats."""
    utils = import_reference(args.reference_repo)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    net = utils.get_network("ConvNet", CHANNELS, NUM_CLASSES, IM_SIZE).to(args.device)
    images = torch.randn(NUM_CLASSES, args.batch_real, CHANNELS, *IM_SIZE, device=args.device)
    parameters = list(net.parameters())

    def forward() -> None:
        with torch.no_grad():
            net.embed(images.reshape(-1, CHANNELS, *IM_SIZE))

    def class_gradients() -> None:
        for c in range(NUM_CLASSES):
            labels = torch.full((args.batch_real,), c, device=args.device)
            loss = nn.functional.cross_entropy(net(images[c]), labels)
            torch.autograd.grad(loss, parameters)

    for part, fn in (("forward", forward), ("class_gradients", class_gradients)):
        seconds = repeat_seconds(fn, args.repeats)
        emit({"kind": "parts", "part": part, "images": NUM_CLASSES * args.batch_real,
              "seconds": stats(seconds), "machine": machine_fields(args)})  # fmt: skip


def mtt_step(args: argparse.Namespace) -> None:
    """Seconds of one MTT matching step (see the module docstring), median of --repeats."""
    utils = import_reference(args.reference_repo)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    net = utils.get_network("ConvNet", CHANNELS, NUM_CLASSES, IM_SIZE).to(args.device)
    names = [name for name, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    start = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    target = start + 0.01 * torch.randn_like(start)
    images = torch.randn(args.images, CHANNELS, *IM_SIZE, device=args.device, requires_grad=True)
    labels = torch.arange(args.images, device=args.device) % NUM_CLASSES
    syn_lr = torch.tensor(0.01, device=args.device, requires_grad=True)

    def as_parameters(flat: torch.Tensor) -> dict[str, torch.Tensor]:
        pieces = torch.split(flat, [int(np.prod(shape)) for shape in shapes])
        return {n: p.view(shape) for n, p, shape in zip(names, pieces, shapes, strict=True)}

    def step() -> None:
        student = [start.clone().requires_grad_(True)]
        for _ in range(args.syn_steps):
            logits = torch.func.functional_call(net, as_parameters(student[-1]), (images,))
            loss = nn.functional.cross_entropy(logits, labels)
            grad = torch.autograd.grad(loss, student[-1], create_graph=True)[0]
            student.append(student[-1] - syn_lr * grad)
        distance = torch.sum((student[-1] - target) ** 2) / torch.sum((start - target) ** 2)
        distance.backward()

    seconds = repeat_seconds(step, args.repeats)
    emit({"kind": "mtt_step", "images": args.images, "syn_steps": args.syn_steps,
          "seconds": stats(seconds), "machine": machine_fields(args)})  # fmt: skip


def main() -> None:
    """Parse the subcommand and run it."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", type=Path, default=Path("/tmp/cifar10-jpeg"))
    common.add_argument("--cache", type=Path, default=Path("/tmp/cifar10-jpeg-cache.npz"))
    common.add_argument(
        "--reference_repo",
        type=Path,
        default=Path("/tmp/DatasetCondensation"),
        help="a checkout of github.com/VICO-UoE/DatasetCondensation",
    )
    common.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    common.add_argument("--device", default="cpu", help="cpu or cuda")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("evaluate", parents=[common], help="test accuracy of a distilled set")
    p.add_argument("--synset", type=Path, required=True, help="DIR with synthetic.npz, labels.json")
    p.add_argument("--runs", type=int, default=3, help="fresh networks, seeds 0..runs-1")
    p.add_argument(
        "--epochs", type=int, default=None, help="epoch_eval_train (default 1000; 300 --no_dsa)"
    )
    p.add_argument("--model", default="ConvNet")
    p.add_argument("--no_dsa", action="store_true", help="train without DSA (main.py's DC)")
    p.set_defaults(func=evaluate)

    p = sub.add_parser("make-random", parents=[common], help="random real images per class")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=make_random)

    p = sub.add_parser("speed", parents=[common], help="iterations/s of the official loop")
    p.add_argument("--method", choices=("dm", "dsa", "dc"), required=True)
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--iterations", type=int, default=10, help="timed, after 1 warm-up")
    p.add_argument("--model", default="ConvNet")
    p.add_argument("--lr_img", type=float, default=None, help="default: 1.0 dm, 0.1 dc/dsa")
    p.add_argument("--batch_real", type=int, default=256)
    p.add_argument("--init", choices=("real", "noise"), default="real")
    p.add_argument("--seed", type=int, default=0, help="numpy/torch seed before the loop")
    p.set_defaults(func=speed)

    p = sub.add_parser("parts", parents=[common], help="seconds of forward / class gradients")
    p.add_argument("--batch_real", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=parts)

    p = sub.add_parser("mtt-step", parents=[common], help="seconds of one MTT matching step")
    p.add_argument("--images", type=int, default=10, help="synthetic images (10 x IPC)")
    p.add_argument("--syn_steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=mtt_step)

    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
