"""Pipeline strings: parsing, early errors, host/device split, determinism, and the preview."""

import json
import pickle
import re
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from bird_jax import augment, data, figures
from bird_jax import config as defaults
from bird_jax.augment import crops, device_ops, gallery, host_ops, mixup, registry
from bird_jax.workdir import Workdir
from configs import quickstart

SIZE = 16
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def _parse(spec):
    return augment.parse_pipeline(spec, image_size=SIZE, mean=MEAN, std=STD)


def test_pipeline_splits_into_host_device_and_batch_ops():
    pipeline = _parse(
        "random_resized_crop(scale=(0.5, 1))|flip_lr|median_blur(3, p=0.3)|"
        "brightness(0.1)|random_erasing(p=0.25)|mixup(0.8, cutmix_alpha=1.0)"
    )
    assert [op.name for op in pipeline.host] == ["random_resized_crop", "flip_lr", "median_blur"]
    assert [op.name for op in pipeline.device] == ["brightness", "random_erasing"]
    assert pipeline.batch.name == "mixup"
    crop, flip, blur = pipeline.host
    assert crop.fn.keywords == {"size": SIZE, "scale": (0.5, 1)}  # size from data.image_size
    assert (flip.p, blur.p, blur.fn.keywords["ksize"]) == (0.5, 0.3, 3)  # positional -> 1st param
    erasing = pipeline.device[1]
    assert erasing.fn.keywords["mean"] == MEAN and erasing.fn.keywords["std"] == STD
    assert pipeline.batch.fn.keywords["cutmix_alpha"] == 1.0
    assert str(_parse(str(pipeline))) == str(pipeline)  # str() round-trips


def test_only_size_mean_and_std_are_filled_from_the_data_config():
    for name in augment.registered_ops():
        op = augment.parse_ops(name, image_size=SIZE, mean=MEAN, std=STD)[0]
        for key in op.injected:
            assert op.fn.keywords[key] == {"size": SIZE, "mean": MEAN, "std": STD}[key], name
    noise = _parse("resize|gaussian_noise").device[0]
    assert noise.injected == () and noise.fn.keywords == {}


def test_ops_are_registered_by_their_decorator_as_the_functions_themselves():
    ops = augment.registered_ops()
    assert ops["center_crop"] == (registry.HOST, crops.center_crop)
    assert ops["flip_lr"] == (registry.HOST, host_ops.flip_lr)
    assert ops["brightness"] == (registry.DEVICE, device_ops.brightness)
    assert ops["mixup"] == (registry.BATCH, mixup.mix)  # registered under another name
    for helper in (host_ops.rgb_uint8, device_ops.adjust_brightness, crops.resize_box):
        assert helper.__name__ not in ops  # undecorated helpers are not ops
    assert list(ops)[:3] == ["random_resized_crop", "resize", "center_crop"]  # stable order
    kinds = [kind for kind, _ in ops.values()]
    assert kinds == sorted(kinds, key=[registry.HOST, registry.DEVICE, registry.BATCH].index)
    assert _parse("resize|flip_lr").host[1].p == 0.5  # the default p given to the decorator


def test_register_refuses_a_taken_name_and_an_unknown_kind():
    def flip_lr(image, rng):
        return image

    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.HOST)(flip_lr)
    with pytest.raises(ValueError, match="Unknown op kind"):
        registry.register("gpu")


def test_a_list_of_op_strings_is_a_pipeline_too():
    assert str(_parse(["resize", "flip_lr(p=1)"])) == str(_parse("resize | flip_lr(p=1)"))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("resize|median_blurr(3)", "Did you mean"),
        ("resize|median_blur(kernel=3)", "no parameter 'kernel'"),
        ("resize|median_blur(3, ksize=5)", "twice"),
        ("resize|median_blur(4)", "ksize"),  # the op's own check, run at parse time
        ("resize|brightness(0.1, p=1.5)", "probability"),
        ("resize|brightness(foo)", "literals"),
        ("resize|brightness(0.1", "Cannot parse"),
        ("resize|brightness(0.2)|flip_lr", "cannot follow"),
        ("resize|mixup|mixup", "cannot follow"),
        ("resize|mixup(p=0.5)", "prob"),
        ("flip_lr", "must produce 16x16"),
        ("random_resized_crop(size=8)", "must produce 16x16"),
    ],
)
def test_bad_pipelines_fail_at_parse_time_saying_what_to_fix(spec, message):
    with pytest.raises(ValueError, match=message):
        _parse(spec)


def test_host_augment_is_deterministic_per_record_seed_and_picklable():
    transform = augment.HostAugment(_parse("random_resized_crop|flip_lr|jpeg((30, 90))").host)
    transform = pickle.loads(pickle.dumps(transform))  # what Grain does for worker processes
    image = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    record = {"image": image, "label": np.int32(1)}

    def run(seed):
        return transform.random_map(record, np.random.default_rng(seed))["image"]

    assert run(1).shape == (SIZE, SIZE, 3) and run(1).dtype == np.uint8
    np.testing.assert_array_equal(run(1), run(1))
    assert not np.array_equal(run(1), run(2))


def test_device_augment_normalises_and_keys_examples_by_global_index():
    pipeline = _parse("resize|brightness(0.3)|gaussian_noise(0.1, p=0.5)")
    device = augment.DeviceAugment.from_pipeline(pipeline, _DataConfig())
    images = np.random.default_rng(0).integers(0, 256, (8, SIZE, SIZE, 3), dtype=np.uint8)
    targets = jax.nn.one_hot(np.arange(8) % 3, 3)
    key = jax.random.PRNGKey(0)
    out, out_targets = jax.jit(device)(images, targets, key)
    assert out.dtype == np.float32 and out.shape == images.shape
    np.testing.assert_array_equal(out_targets, targets)  # no batch op: targets untouched
    # The same 8 examples split over 4 devices get exactly the same augmentation.
    sharded = jax.pmap(lambda x, t: device(x, t, key, axis_name="i"), axis_name="i")(
        images.reshape(4, 2, SIZE, SIZE, 3), np.asarray(targets).reshape(4, 2, 3)
    )[0]
    np.testing.assert_allclose(np.asarray(sharded).reshape(out.shape), out, atol=1e-6)
    # Without device ops it is plain normalisation.
    plain = augment.DeviceAugment((), None, MEAN, STD)(images, targets, key)[0]
    np.testing.assert_allclose(plain, augment.normalize(images, MEAN, STD), atol=1e-6)


class _DataConfig:
    mean, std = MEAN, STD


def _eval_config(spec="center_crop(crop_pct=0.875)", **old_keys) -> ml_collections.ConfigDict:
    config = dict(image_size=SIZE, mean=MEAN, std=STD, eval_pipeline=spec, **old_keys)
    return ml_collections.ConfigDict({k: v for k, v in config.items() if v is not None})


def test_eval_pipeline_is_the_train_grammar_with_host_ops_only():
    pipeline = augment.eval_pipeline(
        _eval_config('center_crop(crop_pct=0.5, interpolation="bicubic")')
    )
    assert (pipeline.device, pipeline.batch) == ((), None)
    (crop,) = pipeline.host
    assert crop.fn.keywords == {"size": SIZE, "crop_pct": 0.5, "interpolation": "bicubic"}
    flipped = augment.eval_pipeline(_eval_config("resize|flip_lr(p=1)"))
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    out = augment.preprocess_for_eval(image, _eval_config("resize|flip_lr(p=1)"))
    np.testing.assert_array_equal(out, crops.resize(image, None, size=SIZE)[:, ::-1])
    assert augment.eval_pipeline(_eval_config("resize|flip_lr(p=1)")) is flipped  # parsed once


@pytest.mark.parametrize(
    "spec, message",
    [
        ("center_crop|brightness(0.2)", r"host ops only.*brightness\(max_delta=0.2\) \(device\)"),
        ("center_crop|mixup", r"host ops only.*\(batch\)"),
        ("center_crop|flip_lr", r"set p=1 in \['flip_lr\(p=0.5\)'\]"),  # flip_lr's default p is 0.5
        ("flip_lr(p=1)", "must produce 16x16"),
        ("center_crop(size=8)", "must produce 16x16"),
        ("center_crop(crop_pct=0)", "crop_pct"),
        ("centre_crop", "Did you mean"),
    ],
)
def test_bad_eval_pipelines_are_refused_naming_the_key(spec, message):
    with pytest.raises(ValueError, match=r"^data\.eval_pipeline") as error:
        augment.eval_pipeline(_eval_config(spec))
    assert re.search(message, str(error.value)), str(error.value)


@pytest.mark.parametrize("crop_pct, interpolation", [(0.875, "bilinear"), (0.6, "bicubic")])
def test_a_saved_config_with_the_old_eval_keys_crops_bit_identically(crop_pct, interpolation):
    old = ml_collections.ConfigDict({"data": _eval_config(None).to_dict()})
    old.data.eval_crop_pct, old.data.interpolation = crop_pct, interpolation
    new = augment.upgrade_eval_keys(old)
    assert "eval_crop_pct" not in new.data and "interpolation" not in new.data
    image = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    before = crops.center_crop(  # what data.eval_crop_pct and data.interpolation ran
        image, None, size=SIZE, crop_pct=crop_pct, interpolation=interpolation
    )
    np.testing.assert_array_equal(augment.preprocess_for_eval(image, new.data), before)
    if interpolation == "bilinear":  # the old default is the new default
        default = augment.preprocess_for_eval(image, defaults.get_config().data)
        assert default.shape == (32, 32, 3)
        new.data.image_size = 32
        np.testing.assert_array_equal(augment.preprocess_for_eval(image, new.data), default)
    current = ml_collections.ConfigDict({"data": _eval_config("resize").to_dict()})
    assert augment.upgrade_eval_keys(current).data.eval_pipeline == "resize"  # left alone


def test_a_run_config_json_with_the_old_eval_keys_still_loads(tmp_path):
    config = quickstart.get_config().to_dict()
    del config["data"]["eval_pipeline"]
    config["data"].update(eval_crop_pct=0.9, interpolation="bicubic")
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = Workdir(tmp_path).read_config()
    assert loaded.data.eval_pipeline == 'center_crop(crop_pct=0.9, interpolation="bicubic")'
    augment.eval_pipeline(loaded.data)


def test_the_old_eval_keys_in_a_current_config_are_refused_naming_the_new_key():
    with pytest.raises(ValueError, match="data.eval_crop_pct is now data.eval_pipeline") as error:
        augment.eval_pipeline(_eval_config(eval_crop_pct=0.9))
    assert """data.eval_pipeline='center_crop(crop_pct=0.9, interpolation="bilinear")'""" in str(
        error.value
    )
    with pytest.raises(ValueError, match="data.eval_crop_pct and data.interpolation are now"):
        augment.eval_pipeline(_eval_config(eval_crop_pct=0.9, interpolation="bicubic"))


def test_augment_does_not_import_data():
    """The dependency is one-way: bird_jax.data uses augment's ops, augment never imports data."""
    script = (
        "import sys\n"
        "import bird_jax.augment, bird_jax.augment.gallery\n"
        "assert 'bird_jax.data' not in sys.modules, sorted(sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_study_pipeline_has_all_eleven_augmentations_and_parses():
    pipeline = _parse(defaults.study_pipeline())
    assert len(pipeline.host) + len(pipeline.device) == 1 + 11
    assert _parse(defaults.study_pipeline(["clahe"])).host[-1].name == "clahe"
    with pytest.raises(ValueError, match="Unknown study augmentation"):
        defaults.study_pipeline(["sharpen"])


def test_gallery_apply_op_shows_each_kind_of_op():
    config = _DataConfig()
    images = np.random.default_rng(1).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    labels = np.arange(4)
    pipeline = _parse("resize|flip_lr|brightness(0.5)|mixup(cutmix_alpha=0.0)")
    flipped = gallery.apply_op(pipeline.host[1], config, images, labels, 4)
    np.testing.assert_array_equal(flipped, images[:, :, ::-1])  # p=1 in the gallery
    for op in (pipeline.device[0], pipeline.batch):
        shown = gallery.apply_op(op, config, images, labels, 4)
        assert shown.dtype == np.uint8 and shown.shape == images.shape
        assert not np.array_equal(shown, images)


def test_preview_rows_show_originals_each_op_and_the_whole_pipeline():
    config = quickstart.get_config()
    config.data.train_pipeline = "random_resized_crop(scale=(0.6, 1))|clahe|salt_pepper(0.1)"
    info = data.load_splits(config.data)
    rows = gallery.preview_rows(config, info, "train", 3, None, 2, seed=0)
    titles = [title for title, _ in rows]
    assert titles[:3] == ["original", "random_resized_crop(scale=(0.6, 1))", "clahe()"]
    assert titles[-2:] == ["train pipeline #1", "train pipeline #2"]
    assert len(rows) == 1 + 3 + 2 and all(images.shape == (3, 32, 32, 3) for _, images in rows)
    only = gallery.preview_rows(config, info, "train", 2, "grid_mask()|jpeg(10)", 1, seed=0)
    assert [title for title, _ in only][1:3] == ["grid_mask()", "jpeg(quality=10)"]
    grid = figures.labelled_rows_image(rows)
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[1] > 3 * 32
