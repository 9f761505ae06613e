"""Every shipped config (and variant) names a registered model with kwargs it accepts."""

import pytest

from bird_jax import augment, experiment, models
from configs import birds525, convnext_tiny, cub200, default, lightweight_cnn, quickstart, vgg16

CONFIGS = [
    quickstart.get_config(),
    lightweight_cnn.get_config(),
    lightweight_cnn.get_config("study"),
    lightweight_cnn.get_config("median_blur"),
    birds525.get_config(),
    cub200.get_config("study"),
    vgg16.get_config(),
    vgg16.get_config("plain"),
    *[convnext_tiny.get_config(size) for size in ("atto", "tiny", "small", "base", "xlarge")],
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.model_name}-{c.data.name}")
def test_config_builds_its_model_and_augmentation(config):
    assert set(config.keys()) == set(default.get_config().keys())  # no stray top-level keys
    assert set(config.data.keys()) == set(default.get_config().data.keys())
    augment.train_pipeline(config.data)  # parses, and its host ops end at data.image_size
    model = experiment.create_model(config, num_classes=7)
    assert model.num_classes == 7
    assert config.model_name in models.list_models()


def test_convnext_recipe_scales_the_official_learning_rate():
    config = convnext_tiny.get_config()
    assert config.lr == 4e-3 and config.base_batch_size == 4096
    assert config.weight_decay == 0.05 and config.label_smoothing == 0.1
    assert config.ema_decay == 0.9999 and config.warmup_epochs == 20.0


@pytest.mark.parametrize(
    "module,arg", [(vgg16, "huge"), (convnext_tiny, "gigantic"), (lightweight_cnn, "sharpen")]
)
def test_unknown_variant_is_refused(module, arg):
    with pytest.raises(ValueError, match=arg):
        module.get_config(arg)
