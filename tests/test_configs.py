"""Every shipped config (and variant) names a registered model with kwargs it accepts."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bird_jax import augment, experiment, models
from bird_jax import config as defaults
from configs import (
    birds525,
    cifar10,
    convnext,
    convnext_tiny,
    cub200,
    finetune,
    lightweight_cnn,
    quickstart,
    stanford_dogs,
    vgg16,
)

CONFIGS = [
    quickstart.get_config(),
    lightweight_cnn.get_config(),
    lightweight_cnn.get_config("study"),
    lightweight_cnn.get_config("median_blur"),
    birds525.get_config(),
    cub200.get_config("study"),
    vgg16.get_config(),
    vgg16.get_config("plain"),
    convnext_tiny.get_config(),
    *[convnext.get_config(size) for size in ("atto", "tiny", "small", "base", "xlarge")],
    *[
        finetune.get_config(arg)
        for arg in (
            "convnext_tiny",
            "convnext_base,probe",
            "resnet50",
            "resnet18,probe",
            "vit_b16",
            "mobilenet_v2",
            "efficientnet_b0,probe",
            "efficientnet_lite0",
        )
    ],
    stanford_dogs.get_config(),
    cifar10.get_config("resnet50"),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.model_name}-{c.data.name}")
def test_config_builds_its_model_and_augmentation(config):
    assert set(config.keys()) == set(defaults.get_config().keys())  # no stray top-level keys
    assert set(config.data.keys()) == set(defaults.get_config().data.keys())
    augment.train_pipeline(config.data)  # parses, and its host ops end at data.image_size
    augment.eval_pipeline(config.data)  # likewise, host ops only
    model = experiment.create_model(config, num_classes=7)
    assert model.num_classes == 7
    assert config.model_name in models.list_models()


def test_convnext_recipe_scales_the_official_learning_rate():
    config = convnext.get_config()
    assert config.lr == 4e-3 and config.base_batch_size == 4096
    assert config.weight_decay == 0.05 and config.label_smoothing == 0.1
    assert config.ema_decay == 0.9999 and config.warmup_epochs == 20.0
    (crop,) = augment.eval_pipeline(config.data).host  # timm's eval: bicubic, crop_pct 0.875
    assert crop.fn.keywords == {"size": 224, "crop_pct": 0.875, "interpolation": "bicubic"}


@pytest.mark.parametrize(
    "module,arg",
    [
        (vgg16, "huge"),
        (convnext, "gigantic"),
        (lightweight_cnn, "sharpen"),
        (finetune, "convnext_tiny,frozen"),
        (finetune, "lenet"),
    ],
)
def test_unknown_variant_is_refused(module, arg):
    with pytest.raises(ValueError, match=arg):
        module.get_config(arg)


def test_finetune_recipes_decay_transformer_like_families_and_probe_the_head_alone():
    convnext_config = finetune.get_config("convnext_tiny")
    assert convnext_config.finetune.layer_decay == 0.8 and convnext_config.batch_size == 32
    probe = finetune.get_config("convnext_tiny,probe")
    assert probe.finetune.freeze_layers == -1 and probe.finetune.batch_norm == "frozen"
    assert probe.lr == 10 * convnext_config.lr and probe.weight_decay == 0.0


def test_a_copied_config_loads_from_any_folder(tmp_path):
    """Config files import only the installed package, so a copy runs outside the repository."""
    shutil.copy(Path(convnext.__file__), tmp_path / "my_convnext.py")
    script = (
        "from absl import flags\n"
        "from ml_collections import config_flags\n"
        "config_flags.DEFINE_config_file('config')\n"
        "flags.FLAGS(['x', '--config=my_convnext.py:small'])\n"
        "print(flags.FLAGS.config.model_name, flags.FLAGS.config.batch_size)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["convnext_small", "128"]
