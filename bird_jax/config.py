"""Experiment defaults and the model-family recipes that `configs/*.py` build on.

They live in the installed package, so a config file (`configs/quickstart.py` or a copy in your
own project) loads from any folder: it imports `bird_jax.config` and overrides a few fields.
"""

from collections.abc import Sequence
from typing import NamedTuple

import ml_collections

# ConvNeXt sizes and their drop-path rates in the official recipe.
CONVNEXT_DROP_PATH = {
    "atto": 0.0, "femto": 0.0, "pico": 0.0, "nano": 0.1, "tiny": 0.1,
    "small": 0.4, "base": 0.5, "large": 0.5, "xlarge": 0.5,
}  # fmt: skip

# The official ConvNeXt augmentation: bicubic random-resized-crop, flip, RandAugment
# rand-m9-mstd0.5-inc1, random erasing 0.25 (pixel mode), Mixup 0.8 / CutMix 1.0.
CONVNEXT_PIPELINE = "|".join(
    [
        'random_resized_crop(interpolation="bicubic")',
        "flip_lr",
        'randaugment("rand-m9-mstd0.5-inc1", interpolation="bicubic")',
        'random_erasing(mode="pixel", p=0.25)',
        "mixup(mixup_alpha=0.8, cutmix_alpha=1.0)",
    ]
)

# The bird study's eleven augmentations, by study name. Host ops (Grain workers): flip, median
# blur, CLAHE, compression, edges; device ops (in the train step): brightness, contrast,
# saturation, Gaussian noise, salt-and-pepper, grid noise. About 2.6 apply to an average image.
STUDY_BASE = "random_resized_crop(scale=(0.35, 1))"
STUDY_OPS = {
    # host
    "flip": "flip_lr(p=0.5)",
    "median_blur": "median_blur(3, p=0.2)",
    "clahe": "clahe(2.0, p=0.2)",
    "compression": "jpeg((30, 90), p=0.2)",
    "edges": "edges(blend=0.3, p=0.1)",
    # device
    "brightness": "brightness(0.2, p=0.3)",
    "contrast": "contrast(0.7, 1.3, p=0.3)",
    "saturation": "saturation(0.6, 1.4, p=0.3)",
    "gaussian_noise": "gaussian_noise((0.01, 0.05), p=0.2)",
    "salt_pepper": "salt_pepper(0.02, p=0.1)",
    "grid_noise": "grid_mask(0.4, p=0.2)",
}


def study_pipeline(names=tuple(STUDY_OPS)) -> str:
    """STUDY_BASE followed by the named study ops (all eleven by default), host ops first."""
    unknown = sorted(set(names) - set(STUDY_OPS))
    if unknown:
        raise ValueError(f"Unknown study augmentation(s) {unknown}; known: {list(STUDY_OPS)}.")
    return "|".join([STUDY_BASE, *(STUDY_OPS[name] for name in STUDY_OPS if name in names)])


def pipeline_ops(spec: str | Sequence[str] | None) -> str | None:
    """A train_pipeline by op names only: 'random_resized_crop(scale=(0.35, 1))|flip_lr' ->
    'random_resized_crop + flip_lr'; 'none' for an empty pipeline."""
    if spec is None:
        return None
    parts = spec.split("|") if isinstance(spec, str) else spec
    names = [part.split("(")[0].strip() for part in parts if part.strip()]
    return " + ".join(names) or "none"


def get_config() -> ml_collections.ConfigDict:
    """The defaults: the lightweight CNN on the embedded digits set."""
    config = ml_collections.ConfigDict()
    config.seed = 0

    # Model: a registry name plus its keyword arguments (see bird_jax.models.list_models()).
    config.model_name = "lightweight_cnn"
    config.model = ml_collections.ConfigDict()
    # Pretrained weights to start from (.safetensors, .pth/.pt/.bin, .npz; timm, torchvision,
    # Hugging Face, official ConvNeXt or `python -m bird_jax.convert` output); "" for none.
    # A head for another class count is initialised afresh. Ignored when the run resumes.
    config.init_from = ""
    # Fine-tuning (bird_jax.finetune): layers are counted stem = 0, one per residual block,
    # final norm + head = last.
    config.finetune = ml_collections.ConfigDict()
    config.finetune.layer_decay = 1.0  # lr of layer i scaled by layer_decay ** (last - i)
    config.finetune.freeze_layers = 0  # freeze layers 0..k-1; -1: all but the head (linear probe)
    config.finetune.head_lr_multiplier = 1.0
    config.finetune.batch_norm = "update"  # update | frozen (normalise with running statistics)

    # Input.
    config.data = ml_collections.ConfigDict()
    config.data.source = "embedded"  # embedded | folder | tfds | distilled (root: its workdir)
    config.data.name = "digits"  # embedded or TFDS dataset name
    config.data.root = ""  # folder source: root/{train,valid,test}/<CLASS>/*.jpg
    config.data.data_dir = None  # TFDS data_dir (None: TFDS's default)
    config.data.train_split = "train"
    config.data.eval_split = "valid"
    config.data.kaggle_handle = ""  # kagglehub handle fetched when data.root is empty
    # Splits and classes (bird_jax.data.subset), seeded by split_seed, not the training seed.
    config.data.valid_from_train = 0.0  # carve a stratified validation split (fraction of train)
    config.data.classes = ()  # explicit class names to keep (empty: all)
    config.data.min_images_per_class = 0  # keep classes with at least this many train images
    config.data.top_k_classes = 0  # keep the k classes with most train images (0: all)
    config.data.images_per_class = 0  # seeded sample of at most this many train images per class
    config.data.split_seed = 0
    config.data.image_size = 32
    # Training augmentation (bird_jax.augment): host ops | device ops | batch op (Mixup/CutMix).
    config.data.train_pipeline = "random_resized_crop(scale=(0.08, 1))|flip_lr"
    # Evaluation: host ops in the same grammar, each applied to every image; the default resizes
    # the shorter side to image_size / 0.875 and keeps the central image_size square.
    config.data.eval_pipeline = "center_crop(crop_pct=0.875)"
    config.data.mean = (0.485, 0.456, 0.406)
    config.data.std = (0.229, 0.224, 0.225)
    config.data.num_workers = 0  # Grain worker processes for decoding and host augmentation
    config.data.read_threads = -1  # decode threads per process; -1: 16 in-process, 0 in workers
    config.data.prefetch = 2

    # Optimisation: AdamW, linear warmup from warmup_lr, cosine decay to min_lr.
    config.batch_size = 64  # global, across all devices and processes
    config.base_batch_size = 256  # peak lr = lr * batch_size / base_batch_size
    config.lr = 1e-3
    config.warmup_lr = 0.0
    config.min_lr = 1e-6
    config.warmup_epochs = 1.0
    config.num_epochs = 10.0
    config.num_train_steps = -1  # > 0 overrides num_epochs
    config.weight_decay = 0.05
    config.b1 = 0.9
    config.b2 = 0.999
    config.grad_clip_norm = 1.0  # <= 0 disables clipping
    config.grad_accum_steps = 1  # one update from k micro-batches of batch_size / k
    config.label_smoothing = 0.0
    config.ema_decay = 0.0  # 0 disables the EMA of the parameters
    config.eval_with_ema = False

    # Numerics: auto = bfloat16 compute (float32 params) on GPU/TPU, float32 on CPU (XLA:CPU has
    # no faster bf16 kernels); or bfloat16, float16 (+ dynamic loss scaling), float32.
    config.precision = "auto"

    # Loop, logging, checkpoints.
    config.log_every_steps = 50
    config.eval_every_steps = 500  # also evaluates at the end
    config.checkpoint_every_steps = 500
    config.max_to_keep = 3
    config.log_input_grid = True
    config.profile = False  # capture a trace of a few steps for TensorBoard's profiler
    config.eval_batch_size = 256

    # What the run cost (bird_jax.efficiency; written to workdir/efficiency.json).
    config.efficiency = ml_collections.ConfigDict()
    # Power assumed when no sensor (NVML, RAPL) is readable; 0: 300 W per GPU/TPU, 65 W on CPU.
    config.efficiency.estimate_watts = 0.0
    config.efficiency.grid_gco2_per_kwh = 475.0  # grid carbon intensity (world average ~475 g/kWh)
    config.efficiency.price_per_device_hour = 0.0  # any currency
    config.efficiency.target_accuracy = 0.0  # > 0: record time and energy to reach this val top-1
    return config


def bird_folder_config() -> ml_collections.ConfigDict:
    """Defaults for a class-per-folder photo set of a few hundred images per class.

    Set `data.root` to a tree `root/{train,valid,test}/<SPECIES>/*.jpg` (Kaggle BIRDS 525 layout).
    """
    config = get_config()
    config.data.source = "folder"
    # Small sets: keep most of the bird in the crop.
    config.data.train_pipeline = "random_resized_crop(scale=(0.35, 1))|flip_lr"
    config.batch_size = 64
    config.base_batch_size = 256
    config.num_epochs = 60.0
    config.warmup_epochs = 3.0
    config.label_smoothing = 0.1
    config.eval_every_steps = 200
    config.checkpoint_every_steps = 200
    return config


def lightweight_cnn(variant: str = "") -> ml_collections.ConfigDict:
    """The lightweight CNN on a bird folder at 128 px; `variant` picks the augmentations:
    '' (random-resized-crop + flip), 'study' (all eleven study ops) or one study op's name."""
    config = bird_folder_config()
    config.model_name = "lightweight_cnn"
    config.data.image_size = 128
    config.lr = 4e-3
    if variant == "study":
        config.data.train_pipeline = study_pipeline()
    elif variant:
        config.data.train_pipeline = study_pipeline([variant])
    return config


def vgg16(variant: str = "bn") -> ml_collections.ConfigDict:
    """VGG16 on a bird folder at 224 px; variant 'bn' (BatchNorm, default) or 'plain'."""
    if variant not in ("bn", "plain"):
        raise ValueError(f"Unknown vgg16 variant {variant!r}: use 'bn' or 'plain'.")
    config = bird_folder_config()
    config.model_name = "vgg16"
    config.model.batch_norm = variant == "bn"
    config.model.dropout_rate = 0.5
    config.data.image_size = 224
    config.lr = 1e-3
    return config


def convnext(size: str = "tiny") -> ml_collections.ConfigDict:
    """ConvNeXt of one size with the official ImageNet-1k recipe, scaled to the run's batch."""
    if size not in CONVNEXT_DROP_PATH:
        raise ValueError(f"Unknown ConvNeXt size {size!r}: use one of {list(CONVNEXT_DROP_PATH)}.")
    config = get_config()
    config.model_name = f"convnext_{size}"
    config.model.drop_path_rate = CONVNEXT_DROP_PATH[size]
    config.data.source = "folder"
    config.data.image_size = 224
    config.data.train_pipeline = CONVNEXT_PIPELINE
    config.data.eval_pipeline = 'center_crop(crop_pct=0.875, interpolation="bicubic")'
    config.batch_size = 128
    config.base_batch_size = 4096
    config.lr = 4e-3
    config.warmup_lr = 0.0
    config.min_lr = 1e-6
    config.weight_decay = 0.05
    config.num_epochs = 300.0
    config.warmup_epochs = 20.0
    config.grad_clip_norm = 0.0  # the official recipe does not clip
    config.label_smoothing = 0.1
    config.ema_decay = 0.9999
    config.eval_with_ema = False  # set True once the EMA has had time to warm up
    config.eval_every_steps = 1000
    config.checkpoint_every_steps = 1000
    return config


class FinetuneRecipe(NamedTuple):
    """How one family is fine-tuned from ImageNet weights (AdamW lr at batch 32)."""

    lr: float
    layer_decay: float = 1.0
    model: dict = {}
    eval_pipeline: str = "center_crop(crop_pct=0.875)"  # torchvision's resize 256, crop 224
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)


_BICUBIC = 'center_crop(crop_pct=0.875, interpolation="bicubic")'  # timm's ImageNet eval
# BatchNorm families train every layer at one rate; ConvNeXt and ViT decay the rate towards the
# input, as their own fine-tuning recipes (ConvNeXt, BEiT/MAE) do. Keys are name prefixes.
FINETUNE_RECIPES = {
    "mobilenet_v2": FinetuneRecipe(1e-3, model={"dropout_rate": 0.2}),
    "efficientnet_b0": FinetuneRecipe(
        1e-3, model={"dropout_rate": 0.2, "drop_path_rate": 0.1}, eval_pipeline=_BICUBIC
    ),
    # No stochastic depth, as the PyTorch reference run (on cub20, 0.2 gave the same top-1).
    "efficientnet_lite0": FinetuneRecipe(
        1e-3, model={"dropout_rate": 0.2, "drop_path_rate": 0.0}, eval_pipeline=_BICUBIC
    ),
    "resnet": FinetuneRecipe(5e-4),
    "convnext_": FinetuneRecipe(
        1e-4, layer_decay=0.8, model={"drop_path_rate": 0.1}, eval_pipeline=_BICUBIC
    ),
    "vit_": FinetuneRecipe(
        1e-4,
        layer_decay=0.65,
        model={"drop_path_rate": 0.1},
        eval_pipeline='center_crop(crop_pct=0.9, interpolation="bicubic")',
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    ),
}


def finetune(model_name: str, linear_probe: bool = False) -> ml_collections.ConfigDict:
    """Fine-tuning `model_name` from `init_from` weights on a bird folder at 224 px.

    The family's recipe (FINETUNE_RECIPES): AdamW at batch 32 with 2 warmup epochs of 30,
    cosine to 1e-6, label smoothing 0.1, clipping at 1.0; layer-wise decay for ConvNeXt and ViT.
    `linear_probe` trains the head alone (everything else frozen, BatchNorm included) at 10x the
    rate without weight decay.
    """
    family = next((f for f in FINETUNE_RECIPES if model_name.startswith(f)), None)
    if family is None:
        raise ValueError(
            f"No fine-tuning recipe for {model_name!r}; families: {', '.join(FINETUNE_RECIPES)}."
        )
    recipe = FINETUNE_RECIPES[family]
    config = bird_folder_config()
    config.model_name = model_name
    config.model.update(recipe.model)
    config.data.image_size = 224
    config.data.eval_pipeline = recipe.eval_pipeline
    config.data.mean, config.data.std = recipe.mean, recipe.std
    config.batch_size = 32
    config.base_batch_size = 32
    config.lr = recipe.lr
    config.num_epochs = 30.0
    config.warmup_epochs = 2.0
    config.finetune.layer_decay = recipe.layer_decay

    if linear_probe:
        config.lr = 10 * recipe.lr
        config.weight_decay = 0.0
        config.label_smoothing = 0.0
        config.finetune.layer_decay = 1.0
        config.finetune.freeze_layers = -1
        config.finetune.batch_norm = "frozen"
    return config
