"""Input pipeline tests on generated images: sources, transforms, batches, state, errors."""

import io
import json
import time

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from bird_jax import data
from bird_jax.augment.crops import random_crop_box
from bird_jax.data.embedded import ArraySource

IMAGE_SIZE = 16
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
TRAIN_CLASSES = ["ALBATROSS", "BLUE JAY", "CROW"]


def make_config(**overrides) -> ml_collections.ConfigDict:
    config = dict(
        source="folder",
        name="",
        root="",
        data_dir=None,
        train_split="train",
        eval_split="valid",
        image_size=IMAGE_SIZE,
        train_pipeline="random_resized_crop(scale=(0.3, 1))|flip_lr",
        eval_pipeline="center_crop(crop_pct=0.875)",
        mean=MEAN,
        std=STD,
        num_workers=0,
        prefetch=2,
    )
    config.update(overrides)
    return ml_collections.ConfigDict(config)


def _noise(rng, height=20, width=30, channels=3):
    return rng.integers(0, 256, (height, width, channels), dtype=np.uint8)


def _truncated_jpeg(rng) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(_noise(rng, 40, 40)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


def _write_class(directory, rng, count, extension=".jpg"):
    directory.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(_noise(rng)).save(directory / f"img{i}{extension}")


@pytest.fixture(scope="module")
def bird_root(tmp_path_factory):
    """root/{train,valid,test}/<CLASS>/ with every image mode and three broken files."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("birds")
    albatross = root / "train" / "ALBATROSS"
    _write_class(albatross, rng, 4)
    Image.fromarray(_noise(rng)[..., 0]).save(albatross / "grey.png")
    Image.fromarray(_noise(rng, channels=4), "RGBA").save(albatross / "rgba.png")
    jay = root / "train" / "BLUE JAY"
    _write_class(jay, rng, 2, ".JPEG")
    Image.fromarray(_noise(rng), "RGB").convert("CMYK").save(jay / "cmyk.jpg")
    Image.fromarray(_noise(rng)).convert("P").save(jay / "palette.gif")
    Image.fromarray(_noise(rng)).save(jay / "bitmap.bmp")
    Image.fromarray(_noise(rng)[..., 0].astype(np.uint16) * 257).save(jay / "deep.png")
    (jay / "empty.jpg").write_bytes(b"")
    (jay / "noise.jpg").write_bytes(rng.bytes(300))
    (jay / "cut.jpg").write_bytes(_truncated_jpeg(rng))
    (jay / "notes.txt").write_text("not an image")
    _write_class(root / "train" / "CROW", rng, 3, ".webp")
    for name in TRAIN_CLASSES:
        _write_class(root / "valid" / name, rng, 2)
        _write_class(root / "test" / name, rng, 1, ".png")
    (root / "valid" / "CROW" / "cut.jpg").write_bytes(_truncated_jpeg(rng))
    return root


@pytest.fixture(scope="module")
def bird_info(bird_root):
    return data.load_splits(make_config(root=str(bird_root)))


def _take(iterator, count):
    return [jax.tree.map(np.asarray, next(iterator)) for _ in range(count)]


def _assert_same_batches(batches, expected):
    assert len(batches) == len(expected)
    for batch, reference in zip(batches, expected, strict=True):
        np.testing.assert_array_equal(batch["label"], reference["label"])
        np.testing.assert_array_equal(batch["image"], reference["image"])


# --- Sources -----------------------------------------------------------------------------


def test_folder_classes_labels_and_skipped_files(bird_info):
    assert bird_info.class_names == TRAIN_CLASSES
    assert sorted(bird_info.splits) == ["test", "train", "valid"]
    train = bird_info.splits["train"]
    # 6 albatross + 7 jays (cut.jpg passes the header check) + 3 crows; 2 files skipped.
    assert len(train) == 16
    assert np.bincount(train.labels).tolist() == [6, 7, 3]
    assert sorted(p.rsplit("/", 1)[-1] for p in bird_info.skipped_files["train"]) == [
        "empty.jpg",
        "noise.jpg",
    ]
    assert bird_info.num_skipped == 2
    valid = bird_info.splits["valid"]
    assert np.bincount(valid.labels).tolist() == [2, 2, 3]
    assert bird_info.num_examples("test") == 3


def test_folder_records_are_rgb_or_none_for_undecodable(bird_info):
    train = bird_info.splits["train"]
    for index in range(len(train)):
        record = train[index]
        if train.paths[index].endswith("cut.jpg"):
            assert record["image"] is None
        else:
            assert record["image"].dtype == np.uint8 and record["image"].shape[2] == 3
        assert record["label"].dtype == np.int32


def test_load_image_converts_modes(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(data.load_image(tmp_path / "grey.png"), np.stack([grey] * 3, -1))
    Image.fromarray(np.full((3, 4), 1000, np.uint16)).save(tmp_path / "deep.png")
    assert data.load_image(tmp_path / "deep.png")[0, 0].tolist() == [4, 4, 4]  # 1000 / 257
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 0] = 200
    Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    assert data.load_image(tmp_path / "clear.png")[0, 0].tolist() == [200, 0, 0]
    Image.new("CMYK", (4, 3), (0, 255, 0, 0)).save(tmp_path / "cmyk.jpg")
    image = data.load_image(tmp_path / "cmyk.jpg")
    assert image.shape == (3, 4, 3) and image.dtype == np.uint8


def test_load_image_rejects_broken_files(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "cut.jpg").write_bytes(_truncated_jpeg(np.random.default_rng(0)))
    for name in ("empty.jpg", "cut.jpg"):
        with pytest.raises(ValueError, match=name):
            data.load_image(tmp_path / name)


def test_missing_split_is_an_error(bird_root):
    with pytest.raises(FileNotFoundError, match="validation"):
        data.load_splits(make_config(root=str(bird_root), eval_split="validation"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load_splits(make_config(root=str(bird_root / "nowhere")))


def test_empty_class_folder_is_an_error(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "valid"):
        _write_class(tmp_path / split / "A", rng, 1)
    (tmp_path / "train" / "B").mkdir()
    (tmp_path / "train" / "B" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="B' holds no images"):
        data.load_splits(make_config(root=str(tmp_path)))


def test_class_with_only_unreadable_images_is_an_error(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "valid"):
        _write_class(tmp_path / split / "A", rng, 1)
    (tmp_path / "train" / "B").mkdir()
    (tmp_path / "train" / "B" / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="no readable images"):
        data.load_splits(make_config(root=str(tmp_path)))


def test_eval_class_unknown_to_train_is_an_error(tmp_path):
    rng = np.random.default_rng(0)
    _write_class(tmp_path / "train" / "A", rng, 1)
    _write_class(tmp_path / "valid" / "A", rng, 1)
    _write_class(tmp_path / "valid" / "Z", rng, 1)
    with pytest.raises(ValueError, match="no counterpart in the train split"):
        data.load_splits(make_config(root=str(tmp_path)))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(source="bucket"), "Unknown data source"),
        (dict(source="embedded", name="faces"), "Unknown embedded dataset"),
        (dict(source="embedded", name="digits", eval_split="holdout"), "Unknown split"),
    ],
)
def test_bad_source_settings_are_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        data.load_splits(make_config(**overrides))


def test_digits_source_is_stratified_and_seeded():
    info = data.load_splits(make_config(source="embedded", name="digits"))
    assert info.class_names == [str(d) for d in range(10)]
    sizes = {name: len(split) for name, split in info.splits.items()}
    assert sum(sizes.values()) == 1797 and sizes["valid"] == sizes["test"] == 180
    for split in info.splits.values():
        counts = np.bincount(split.labels, minlength=10)
        assert counts.min() >= 0.09 * len(split)  # Every digit present in proportion.
        record = split[0]
        assert record["image"].shape == (32, 32, 3) and record["image"].dtype == np.uint8
    again = data.load_splits(make_config(source="embedded", name="digits"))
    np.testing.assert_array_equal(again.splits["valid"].images, info.splits["valid"].images)


def test_tfds_not_prepared_fails_fast_with_instructions(tmp_path):
    start = time.monotonic()
    with pytest.raises(FileNotFoundError, match=r"tfds build mnist --data_dir=.*--file_format"):
        data.load_splits(
            make_config(source="tfds", name="mnist", data_dir=str(tmp_path), eval_split="test")
        )
    assert time.monotonic() - start < 20
    assert not any(tmp_path.iterdir())  # Nothing downloaded or created.


def test_tfds_unknown_name_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="Unknown TFDS dataset"):
        data.load_splits(make_config(source="tfds", name="no_such_set_xyz", data_dir=str(tmp_path)))


def test_tfds_prepared_dataset_is_read_without_network(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")

    class BirdJaxTinyGrey(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 1)),
                    "label": tfds.features.ClassLabel(names=["dark", "light"]),
                }
            )
            return tfds.core.DatasetInfo(
                builder=self, features=features, supervised_keys=("image", "label")
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(10), "test": self._generate_examples(5)}

        def _generate_examples(self, count):
            for i in range(count):  # Encoded bytes: preparing then needs no TensorFlow.
                buffer = io.BytesIO()
                Image.fromarray(np.full((12, 10 + i), 40 * (i % 2), np.uint8)).save(buffer, "PNG")
                yield i, {"image": buffer.getvalue(), "label": i % 2}

    BirdJaxTinyGrey(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    config = make_config(
        source="tfds", name="bird_jax_tiny_grey", data_dir=str(tmp_path), eval_split="test"
    )
    info = data.load_splits(config)
    assert info.class_names == ["dark", "light"]
    assert {name: len(split) for name, split in info.splits.items()} == {"train": 10, "test": 5}
    for index in range(10):  # TFDS shuffles on preparation; image i is 12 x (10 + i), label i % 2.
        record = info.splits["train"][index]
        height, width, channels = record["image"].shape
        assert (height, channels) == (12, 3) and record["label"] == (width - 10) % 2
        assert np.all(record["image"] == 40 * record["label"])
    masks = [b["mask"] for b in data.eval_batches(info, config, "test", global_batch_size=8)]
    assert float(np.sum(masks)) == 5


# --- Transforms --------------------------------------------------------------------------


def test_random_crop_box_respects_scale_and_ratio():
    rng = np.random.default_rng(0)
    for _ in range(200):
        left, top, right, bottom = random_crop_box(60, 80, (0.2, 0.6), (0.5, 2.0), rng)
        width, height = right - left, bottom - top
        assert min(left, top) >= 0 and right <= 80 and bottom <= 60
        assert 0.2 - 1e-9 <= width * height / (60 * 80) <= 0.6 + 1e-9
        assert 0.5 - 1e-9 <= width / height <= 2.0 + 1e-9
    # No sample can fit a square covering 90% of a 4x100 strip: fall back to a central crop.
    left, top, right, bottom = random_crop_box(4, 100, (0.9, 1.0), (1.0, 1.0), rng)
    assert (left, top, right, bottom) == (48.0, 0.0, 52.0, 4.0)


def test_preprocess_for_eval_center_crops():
    image = np.zeros((40, 60, 3), np.uint8)
    image[7:33, 17:43] = 255  # White centre, a little wider than half the shorter side.
    out = data.preprocess_for_eval(image, make_config(eval_pipeline="center_crop(crop_pct=0.5)"))
    assert out.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and out.dtype == np.uint8
    assert (out == 255).all()
    wider = data.preprocess_for_eval(image, make_config(eval_pipeline="center_crop(crop_pct=1)"))
    assert wider[0, 0, 0] == 0 and wider[IMAGE_SIZE // 2, IMAGE_SIZE // 2, 0] == 255


def test_bad_augmentation_settings_are_errors(bird_info):
    for overrides in (
        dict(train_pipeline="random_resized_crop(scale=(0.5, 1.5))"),
        dict(train_pipeline="flip_lr"),  # no op sets the size
        dict(train_pipeline="resize|median_blur(4)"),
        dict(train_pipeline="resize|brightness(0.2)|flip_lr"),  # host op after a device op
        dict(eval_pipeline="center_crop(crop_pct=0)"),
        dict(eval_pipeline='center_crop(interpolation="x")'),
        dict(eval_pipeline="center_crop|brightness(0.2)"),  # eval takes host ops only
        dict(eval_crop_pct=0.9),  # the key eval_pipeline replaced
        dict(read_threads=-2),
    ):
        with pytest.raises(ValueError):
            data.TrainIterator(bird_info, make_config(**overrides), global_batch_size=16, seed=0)


# --- Training batches --------------------------------------------------------------------


def test_train_batches_shapes_dtypes_ranges_and_placement(bird_info):
    iterator = data.TrainIterator(bird_info, make_config(), global_batch_size=16, seed=0)
    batch = next(iterator)
    assert batch["image"].shape == (8, 2, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert batch["image"].dtype == np.uint8  # normalised on the device
    assert batch["label"].shape == (8, 2) and batch["label"].dtype == np.int32
    assert set(batch["image"].sharding.device_set) == set(jax.local_devices())
    assert batch["image"].addressable_shards[0].data.shape == (1, 2, IMAGE_SIZE, IMAGE_SIZE, 3)
    images, labels = np.asarray(batch["image"]), np.asarray(batch["label"])
    assert images.std() > 10  # Not blank.
    assert labels.min() >= 0 and labels.max() < 3


@pytest.mark.parametrize("flip", [True, False])
def test_flip_mirrors_about_half_the_images_when_enabled(flip):
    image = np.random.default_rng(0).integers(0, 256, (1, 8, 8, 3), dtype=np.uint8)
    info = data.DatasetInfo(["only"], {"train": ArraySource("one", image, np.zeros(1))})
    config = make_config(image_size=8, train_pipeline="resize|flip_lr" if flip else "resize")
    batch = next(data.TrainIterator(info, config, global_batch_size=32, seed=0))
    pixels = np.asarray(batch["image"]).reshape(32, 8, 8, 3)
    mirrored = [np.array_equal(p, image[0, :, ::-1]) for p in pixels]
    unchanged = [np.array_equal(p, image[0]) for p in pixels]
    assert all(m or u for m, u in zip(mirrored, unchanged, strict=True))
    assert (4 <= sum(mirrored) <= 28) if flip else not any(mirrored)


def test_batch_size_must_split_over_devices(bird_info):
    with pytest.raises(ValueError, match="multiple of"):
        data.TrainIterator(bird_info, make_config(), global_batch_size=12, seed=0)
    with pytest.raises(ValueError, match="multiple of"):
        next(data.eval_batches(bird_info, make_config(), "valid", global_batch_size=4))


def test_same_seed_same_batches_other_seed_other_batches(bird_info):
    config = make_config()
    first = _take(data.TrainIterator(bird_info, config, global_batch_size=16, seed=3), 3)
    again = _take(data.TrainIterator(bird_info, config, global_batch_size=16, seed=3), 3)
    other = _take(data.TrainIterator(bird_info, config, global_batch_size=16, seed=4), 3)
    _assert_same_batches(again, first)
    assert not np.array_equal(other[0]["image"], first[0]["image"])


def test_every_epoch_sees_each_decodable_image_once(bird_info):
    iterator = data.TrainIterator(bird_info, make_config(), global_batch_size=16, seed=0)
    # Batches of 16 = epochs of the 16 train records; the undecodable jay's slot is filled by
    # the next image of the stream, so each epoch holds every decodable image plus one repeat.
    for batch in _take(iterator, 6):
        counts = np.bincount(np.asarray(batch["label"]).ravel(), minlength=3)
        assert counts.sum() == 16 and all(counts >= [6, 6, 3]), counts


def test_each_process_reads_its_block_of_the_same_global_batches(bird_info, monkeypatch):
    config = make_config()

    def host_batches(process_index, process_count):
        monkeypatch.setattr(jax, "process_index", lambda: process_index)
        monkeypatch.setattr(jax, "process_count", lambda: process_count)
        batches = data.pipeline.train_host_batches(
            bird_info, config, global_batch_size=16, seed=2, first_batch=1
        )
        return [next(iterator) for iterator in [iter(batches)] for _ in range(3)]

    single = host_batches(0, 1)
    halves = host_batches(0, 2), host_batches(1, 2)
    for step, whole in enumerate(single):
        for key in ("image", "label"):
            parts = [np.asarray(half[step][key]) for half in halves]
            np.testing.assert_array_equal(np.concatenate(parts), np.asarray(whole[key]))


def test_restored_state_continues_with_the_same_batches(bird_info):
    config = make_config(prefetch=3)
    iterator = data.TrainIterator(bird_info, config, global_batch_size=16, seed=0)
    _take(iterator, 3)
    state = json.loads(json.dumps(iterator.get_state()))  # Must survive JSON.
    expected = _take(iterator, 4)  # Crosses epoch boundaries (15 images per epoch).

    restored = data.TrainIterator(bird_info, config, global_batch_size=16, seed=0)
    restored.set_state(state)
    _assert_same_batches(_take(restored, 4), expected)

    iterator.set_state(state)  # Rewinding a running iterator drops its prefetched batches.
    _assert_same_batches(_take(iterator, 4), expected)


def test_worker_processes_give_the_same_batches(bird_info):
    config = make_config()
    expected = _take(data.TrainIterator(bird_info, config, global_batch_size=16, seed=1), 2)
    config.num_workers = 1
    iterator = data.TrainIterator(bird_info, config, global_batch_size=16, seed=1)
    _assert_same_batches(_take(iterator, 2), expected)


def test_digits_train_batches():
    config = make_config(source="embedded", name="digits")
    info = data.load_splits(config)
    batch = next(data.TrainIterator(info, config, global_batch_size=32, seed=0))
    assert batch["image"].shape == (8, 4, IMAGE_SIZE, IMAGE_SIZE, 3)


# --- Evaluation batches ------------------------------------------------------------------


def test_eval_sees_every_example_once_and_pads_the_last_batch():
    values = np.arange(13, dtype=np.uint8) * 19  # Image i is uniformly 19 * i.
    images = np.broadcast_to(values[:, None, None, None], (13, 8, 8, 3)).copy()
    info = data.DatasetInfo(
        class_names=[str(i) for i in range(13)],
        splits={"valid": ArraySource("thirteen", images, np.arange(13))},
    )
    config = make_config(
        image_size=8, eval_pipeline="center_crop(crop_pct=1)", mean=(0, 0, 0), std=(1, 1, 1)
    )
    batches = list(data.eval_batches(info, config, "valid", global_batch_size=8))
    assert len(batches) == 2
    masks = np.concatenate([np.asarray(b["mask"]).ravel() for b in batches])
    labels = np.concatenate([np.asarray(b["label"]).ravel() for b in batches])
    pixels = np.concatenate([np.asarray(b["image"])[..., 0, 0, 0].ravel() for b in batches])
    assert masks.tolist() == [1.0] * 13 + [0.0] * 3
    assert labels[:13].tolist() == list(range(13))
    np.testing.assert_array_equal(pixels[:13], values)
    assert batches[1]["mask"].shape == (8, 1) and batches[1]["image"].shape == (8, 1, 8, 8, 3)


def test_eval_drops_undecodable_images(bird_info):
    config = make_config()
    batches = list(data.eval_batches(bird_info, config, "valid", global_batch_size=8))
    assert len(batches) == 1  # 7 files, one truncated.
    mask = np.asarray(batches[0]["mask"]).ravel()
    assert mask.sum() == 6
    assert np.asarray(batches[0]["label"]).ravel()[mask == 1].tolist() == [0, 0, 1, 1, 2, 2]
