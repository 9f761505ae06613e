"""Defaults shared by every bird_jax config; the model configs override a few fields.

Not meant to be run on its own: `configs/quickstart.py` is the smallest complete experiment.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    """Returns the default experiment: lightweight CNN on the embedded digits set."""
    config = ml_collections.ConfigDict()
    config.seed = 0

    # Model: a registry name plus its keyword arguments (see bird_jax.models.list_models()).
    config.model_name = "lightweight_cnn"
    config.model = ml_collections.ConfigDict()

    # Input.
    config.data = ml_collections.ConfigDict()
    config.data.source = "embedded"  # embedded | folder | tfds
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
    config.data.eval_crop_pct = 0.875  # eval: resize to image_size / pct, centre-crop image_size
    config.data.interpolation = "bilinear"  # eval resize; bilinear | bicubic
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

    # Numerics: bfloat16 compute with float32 params (default), float16 + loss scaling, or float32.
    config.precision = "bfloat16"

    # Loop, logging, checkpoints.
    config.log_every_steps = 50
    config.eval_every_steps = 500  # also evaluates at the end
    config.checkpoint_every_steps = 500
    config.max_to_keep = 3
    config.log_input_grid = True
    config.profile = False  # capture a trace of a few steps for TensorBoard's profiler
    config.eval_batch_size = 256
    config.top_k = 5

    # What the run cost (bird_jax.efficiency; written to workdir/efficiency.json).
    config.efficiency = ml_collections.ConfigDict()
    # Power assumed when no sensor (NVML, RAPL) is readable; 0: 300 W per GPU/TPU, 65 W on CPU.
    config.efficiency.estimate_watts = 0.0
    config.efficiency.grid_gco2_per_kwh = 475.0  # grid carbon intensity (world average ~475 g/kWh)
    config.efficiency.price_per_device_hour = 0.0  # any currency
    config.efficiency.target_accuracy = 0.0  # > 0: record time and energy to reach this val top-1
    return config


def get_bird_folder_config() -> ml_collections.ConfigDict:
    """Defaults for the bird study: a class-per-folder photo set of a few hundred images per class.

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
