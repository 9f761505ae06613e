"""Class subsetting, balancing and validation carving (bird_jax.data.subset) on in-memory data."""

import grain
import ml_collections
import numpy as np
import pytest

from bird_jax import data
from bird_jax.data import subset
from bird_jax.data.embedded import ArraySource

NAMES = ["EMU", "DODO", "CROW", "BLUE JAY", "AUK"]


def _source(name: str, labels: list[int], offset: int = 0) -> ArraySource:
    """Image i is 2x2 with pixel value (offset + i) // 256, (offset + i) % 256: traceable."""
    ids = np.arange(offset, offset + len(labels))
    images = np.zeros((len(labels), 2, 2, 3), np.uint8)
    images[..., 0] = (ids // 256)[:, None, None]
    images[..., 1] = (ids % 256)[:, None, None]
    return ArraySource(name, images, np.array(labels))


def _image_id(record) -> int:
    return int(record["image"][0, 0, 0]) * 256 + int(record["image"][0, 0, 1])


def _info(train_counts) -> data.DatasetInfo:
    """Classes NAMES[:len(train_counts)]; valid holds 2 images of each."""
    train = np.repeat(np.arange(len(train_counts)), train_counts).tolist()
    valid = np.repeat(np.arange(len(train_counts)), 2).tolist()
    splits = {"train": _source("train", train), "valid": _source("valid", valid, offset=1000)}
    return data.DatasetInfo(list(NAMES[: len(train_counts)]), splits)


def _subset(info, **options):
    return subset.subset_classes(info, "train", subset.SplitOptions(**options))


def _counts(source, num_classes):
    return np.bincount(source.labels, minlength=num_classes).tolist()


def test_top_k_ranks_by_train_count_breaks_ties_by_name_and_keeps_dataset_order():
    info = _info([5, 9, 9, 2, 7])  # EMU 5, DODO 9, CROW 9, BLUE JAY 2, AUK 7
    top3 = _subset(info, top_k_classes=3)
    assert top3.class_names == ["DODO", "CROW", "AUK"]  # Dataset order, relabelled 0..2.
    assert _counts(top3.splits["train"], 3) == [9, 9, 7]
    assert _subset(info, top_k_classes=1).class_names == ["CROW"]  # Tie with DODO: by name.


def test_top_k_breaks_train_ties_by_the_images_in_all_splits():
    """TFDS Stanford Dogs has 100 train images of every breed: the most frequent overall win."""
    train = np.repeat(np.arange(4), 3).tolist()  # 3 train images of each
    valid = [1, 1, 1, 3, 3, 0]  # DODO 3, BLUE JAY 2, EMU 1, CROW 0
    splits = {"train": _source("train", train), "valid": _source("valid", valid, offset=1000)}
    info = data.DatasetInfo(list(NAMES[:4]), splits)
    assert _subset(info, top_k_classes=2).class_names == ["DODO", "BLUE JAY"]


def test_min_images_per_class_keeps_classes_at_or_above_the_threshold():
    info = _info([5, 9, 9, 2, 7])
    assert _subset(info, min_images_per_class=7).class_names == ["DODO", "CROW", "AUK"]


def test_explicit_classes_keep_dataset_order_and_relabel_every_split():
    info = _info([5, 9, 9, 2, 7])
    kept = _subset(info, classes=("AUK", "DODO"))
    assert kept.class_names == ["DODO", "AUK"]
    for name, split in kept.splits.items():
        parent = info.splits[name]
        for index in range(len(split)):
            record = split[index]
            original = _image_id(record) - (1000 if name == "valid" else 0)
            assert NAMES[parent.labels[original]] == kept.class_names[record["label"]]
        assert _counts(split, 2) == ([9, 7] if name == "train" else [2, 2])


def test_filters_apply_in_order_classes_then_minimum_then_top_k():
    info = _info([5, 2, 4, 9])  # EMU 5, DODO 2, CROW 4, BLUE JAY 9 (the largest, not listed).
    kept = _subset(info, classes=("EMU", "DODO", "CROW"), min_images_per_class=3, top_k_classes=1)
    assert kept.class_names == ["EMU"]


def test_images_per_class_samples_train_only_seeded_and_balanced():
    info = _info([10, 3, 8])
    first = _subset(info, images_per_class=4, seed=1)
    assert _counts(first.splits["train"], 3) == [4, 3, 4]  # DODO has only 3: kept whole.
    assert _counts(first.splits["valid"], 3) == [2, 2, 2]  # Eval splits keep every image.
    again = _subset(info, images_per_class=4, seed=1)
    np.testing.assert_array_equal(again.splits["train"].indices, first.splits["train"].indices)
    other = _subset(info, images_per_class=4, seed=2)
    assert not np.array_equal(other.splits["train"].indices, first.splits["train"].indices)
    # A class's sample does not depend on which other classes are kept.
    alone = _subset(info, classes=("EMU",), images_per_class=4, seed=1)
    np.testing.assert_array_equal(
        alone.splits["train"].indices,
        first.splits["train"].indices[first.splits["train"].labels == 0],
    )


def test_unknown_class_names_are_an_error_with_close_matches():
    info = _info([5, 9, 9, 2, 7])
    with pytest.raises(ValueError, match=r"data.classes.*'Blue Jai': \['BLUE JAY'\]"):
        _subset(info, classes=("Blue Jai", "EMU"))


def test_nothing_left_is_an_error():
    with pytest.raises(ValueError, match="No class is left.*largest class has 9"):
        _subset(_info([5, 9, 9, 2, 7]), min_images_per_class=10)


@pytest.mark.parametrize(
    "options, key",
    [
        (dict(top_k_classes=-1), "data.top_k_classes"),
        (dict(images_per_class=2.5), "data.images_per_class"),
        (dict(min_images_per_class=-3), "data.min_images_per_class"),
        (dict(classes="EMU"), "data.classes"),
        (dict(valid_from_train=1.0), "data.valid_from_train"),
        (dict(valid_from_train=-0.1), "data.valid_from_train"),
    ],
)
def test_bad_options_are_errors_naming_the_key(options, key):
    with pytest.raises(ValueError, match=key):
        subset.SplitOptions(**options)


def test_options_missing_from_an_older_config_are_off():
    options = subset.SplitOptions.from_config(ml_collections.ConfigDict({"source": "folder"}))
    assert options == subset.SplitOptions() and not options.filters_classes


def test_carving_is_stratified_disjoint_and_seeded():
    train = np.repeat([0, 1, 2], [20, 10, 1]).tolist()
    info = data.DatasetInfo(["A", "B", "C"], {"train": _source("train", train)})
    carved = subset.carve_validation(info, "train", "valid", 0.2, seed=0)
    kept, valid = carved.splits["train"], carved.splits["valid"]
    assert _counts(valid, 3) == [4, 2, 0]  # The single C stays in train.
    assert _counts(kept, 3) == [16, 8, 1]
    assert sorted([*kept.indices, *valid.indices]) == list(range(31))  # A partition.
    for split in (kept, valid):
        assert [_image_id(split[i]) for i in range(len(split))] == split.indices.tolist()
    again = subset.carve_validation(info, "train", "valid", 0.2, seed=0)
    np.testing.assert_array_equal(again.splits["valid"].indices, valid.indices)
    other = subset.carve_validation(info, "train", "valid", 0.2, seed=1)
    assert not np.array_equal(other.splits["valid"].indices, valid.indices)


def test_carving_into_an_existing_split_is_an_error():
    with pytest.raises(ValueError, match="has a split 'valid' already"):
        subset.carve_validation(_info([5, 5]), "train", "valid", 0.2, seed=0)


def _digits_config(**overrides):
    config = dict(
        source="embedded", name="digits", root="", data_dir=None,
        train_split="train", eval_split="holdout", valid_from_train=0.1,
        classes=(), min_images_per_class=0, top_k_classes=3, images_per_class=20, split_seed=0,
    )  # fmt: skip
    config.update(overrides)
    return ml_collections.ConfigDict(config)


def test_load_splits_carves_then_subsets_and_grain_restores_its_state():
    config = _digits_config()
    info = data.load_splits(config)
    assert len(info.class_names) == 3 and sorted(info.splits) == [
        "holdout",
        "test",
        "train",
        "valid",
    ]
    assert _counts(info.splits["train"], 3) == [20, 20, 20]
    assert set(info.splits["holdout"].labels) == {0, 1, 2} and len(info.splits["holdout"]) < 60
    # Carved from train before subsetting: holdout and train never share an image.
    train_ids = set(info.splits["train"].indices)
    assert not train_ids & set(info.splits["holdout"].indices)

    def loader(source):
        sampler = grain.samplers.IndexSampler(len(source), shuffle=True, num_epochs=1, seed=0)
        operations = [grain.transforms.Batch(8)]
        return grain.DataLoader(data_source=source, sampler=sampler, operations=operations)

    iterator = iter(loader(info.splits["train"]))
    next(iterator)
    state = iterator.get_state()
    expected = next(iterator)
    restored = iter(loader(data.load_splits(config).splits["train"]))  # A fresh load, same repr.
    restored.set_state(state)
    np.testing.assert_array_equal(next(restored)["image"], expected["image"])
    with pytest.raises(ValueError, match="data source"):
        other = iter(loader(data.load_splits(_digits_config(split_seed=5)).splits["train"]))
        other.set_state(state)


def test_birds525_config_selects_the_studys_ten_species_of_a_hundred_images():
    from configs import birds525

    counts = [250, 199, 260, 230, 201, 120, 300, 205, 240, 215, 222, 200, 210]
    names = [f"SPECIES {i:02d}" for i in range(len(counts))]
    train = np.repeat(np.arange(len(counts)), counts).tolist()
    info = data.DatasetInfo(names, {"train": _source("train", train)})
    options = subset.SplitOptions.from_config(birds525.get_config().data)
    kept = subset.subset_classes(info, "train", options)
    eligible = [i for i, count in enumerate(counts) if count >= 200]  # 11 species.
    largest = sorted(eligible, key=lambda i: -counts[i])[:10]  # Drops the 200-image one.
    assert kept.class_names == [names[i] for i in sorted(largest)]
    assert _counts(kept.splits["train"], 10) == [100] * 10
