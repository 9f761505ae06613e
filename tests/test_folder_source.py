"""Folder datasets beyond tests/test_data.py: Kaggle birds.csv, kagglehub fetching, carving a
split, and the TFDS folder builder prepared into array_record and read back through Grain."""

import io
import json
import os
import sys
import types

import grain
import ml_collections
import numpy as np
import pytest
from PIL import Image

from bird_jax import data
from bird_jax.data import folder_builder, kaggle, net, prepare


def make_config(**overrides) -> ml_collections.ConfigDict:
    config = dict(
        source="folder", name="", root="", data_dir=None, kaggle_handle="",
        train_split="train", eval_split="valid",
    )  # fmt: skip
    config.update(overrides)
    return ml_collections.ConfigDict(config)


def _noise(height, width, channels=3, seed=0):
    shape = (height, width, channels) if channels else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _save(path, image: Image.Image, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)


def _truncated_jpeg(path):
    """Passes the header check, fails the full decode."""
    buffer = io.BytesIO()
    Image.fromarray(_noise(40, 40)).save(buffer, "JPEG", quality=90)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


# --- Kaggle BIRDS 525: birds.csv ----------------------------------------------------------


def _write_csv(root, rows, header="class id,filepaths,labels,data set,scientific name"):
    lines = [header] + [",".join(row) for row in rows]
    (root / "birds.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def kaggle_root(tmp_path):
    """Kaggle-like tree whose birds.csv orders classes by id, not by name."""
    root = tmp_path / "birds"
    rows = []
    for split, count in (("train", 3), ("valid", 1), ("test", 1)):
        for class_id, (folder, label) in enumerate([("ZEBRA DOVE", "ZEBRA DOVE"), ("AUK", "AUK")]):
            for i in range(count):
                _save(root / split / folder / f"{i}.jpg", Image.fromarray(_noise(8, 8)))
                rows.append((f"{class_id}.0", f"{split}/{folder}/{i}.jpg", label, split, "X"))
    # Folder name and label differ (as in some dataset versions); a Windows path separator.
    _save(root / "train" / "PARAKETT  AUKLET" / "0.jpg", Image.fromarray(_noise(8, 8)))
    rows.append(("2.0", "train\\PARAKETT  AUKLET\\0.jpg", "PARAKETT AUKLET", "train", "X"))
    rows.append(("2.0", "train/PARAKETT  AUKLET/missing.jpg", "PARAKETT AUKLET", "train", "X"))
    _save(root / "train" / "AUK" / "unlisted.jpg", Image.fromarray(_noise(8, 8)))
    _write_csv(root, rows)
    return root


def test_birds_csv_lists_files_splits_and_class_order(kaggle_root):
    info = data.load_splits(make_config(root=str(kaggle_root)))
    assert info.class_names == ["ZEBRA DOVE", "AUK", "PARAKETT AUKLET"]  # By class id.
    assert sorted(info.splits) == ["test", "train", "valid"]
    train = info.splits["train"]
    assert np.bincount(train.labels).tolist() == [3, 3, 1]  # unlisted.jpg is not in the csv.
    assert [os.path.basename(p) for p in info.skipped_files["train"]] == ["missing.jpg"]
    assert np.bincount(info.splits["test"].labels).tolist() == [1, 1]
    record = train[int(np.flatnonzero(train.labels == 2)[0])]
    assert record["image"].shape == (8, 8, 3) and record["label"] == 2


def test_birds_csv_without_class_ids_sorts_names_and_checks_columns(kaggle_root):
    rows = [("train/AUK/0.jpg", "AUK", "train"), ("train/ZEBRA DOVE/0.jpg", "ZEBRA DOVE", "train")]
    rows += [("valid/AUK/0.jpg", "AUK", "valid")]
    _write_csv(kaggle_root, rows, header="filepaths,labels,data set")
    assert data.load_splits(make_config(root=str(kaggle_root))).class_names == ["AUK", "ZEBRA DOVE"]
    _write_csv(kaggle_root, [("train/AUK/0.jpg", "AUK")], header="filepaths,labels")
    with pytest.raises(ValueError, match=r"lacks the columns \['data set'\]"):
        data.load_splits(make_config(root=str(kaggle_root)))


def test_carving_needs_no_eval_folder_and_refuses_an_existing_split(kaggle_root):
    carved = data.load_splits(
        make_config(root=str(kaggle_root), eval_split="holdout", valid_from_train=0.34)
    )
    assert np.bincount(carved.splits["holdout"].labels).tolist() == [1, 1]  # 1 of 3 each.
    assert len(carved.splits["train"]) == 5 and len(carved.splits["valid"]) == 2
    with pytest.raises(ValueError, match="has a split 'valid' already"):
        data.load_splits(make_config(root=str(kaggle_root), valid_from_train=0.34))


# --- Fetching with kagglehub ----------------------------------------------------------------


@pytest.fixture
def no_kaggle_credentials(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", "")  # Recorded, so teardown removes it again.
    monkeypatch.delenv("KAGGLE_CONFIG_DIR")
    return home


def test_kaggle_without_credentials_says_what_to_download(no_kaggle_credentials, monkeypatch):
    monkeypatch.setattr(net, "host_reachable", lambda url: pytest.fail("network touched"))
    config = make_config(kaggle_handle="gpiosenka/100-bird-species")
    with pytest.raises(FileNotFoundError) as error:
        data.load_splits(config)
    message = str(error.value)
    assert "no Kaggle credentials" in message and "KAGGLE_USERNAME" in message
    assert "www.kaggle.com/datasets/gpiosenka/100-bird-species" in message
    assert "config.data.root" in message


def test_empty_root_without_a_kaggle_handle_is_an_error():
    with pytest.raises(ValueError, match="config.data.root is empty.*kaggle_handle"):
        data.load_splits(make_config())


def test_kaggle_fetches_with_credentials_through_kagglehub(
    no_kaggle_credentials, kaggle_root, monkeypatch
):
    config_dir = no_kaggle_credentials / ".config" / "kaggle"
    config_dir.mkdir(parents=True)
    (config_dir / "kaggle.json").write_text(json.dumps({"username": "u", "key": "k"}))
    download = kaggle_root.parent  # The dataset sits one folder down, as unzipped downloads do.
    calls = []

    def dataset_download(handle):
        calls.append((handle, os.environ.get("KAGGLE_CONFIG_DIR")))
        return str(download)

    monkeypatch.setitem(
        sys.modules, "kagglehub", types.SimpleNamespace(dataset_download=dataset_download)
    )
    monkeypatch.setattr(net, "host_reachable", lambda url: url == kaggle.KAGGLE_URL)
    info = data.load_splits(make_config(kaggle_handle="someone/birds"))
    assert calls == [("someone/birds", str(config_dir))]  # kagglehub told where kaggle.json is.
    assert info.class_names == ["ZEBRA DOVE", "AUK", "PARAKETT AUKLET"]

    monkeypatch.setattr(net, "host_reachable", lambda url: False)
    with pytest.raises(FileNotFoundError, match="cannot be reached"):
        data.load_splits(make_config(kaggle_handle="someone/birds"))


# --- The TFDS folder builder ------------------------------------------------------------------


def test_stored_image_keeps_plain_files_and_reencodes_the_rest(tmp_path):
    _save(tmp_path / "plain.jpg", Image.fromarray(_noise(6, 7)))
    assert (
        folder_builder.stored_image(str(tmp_path / "plain.jpg"))
        == (tmp_path / "plain.jpg").read_bytes()
    )
    _save(tmp_path / "cmyk.jpg", Image.fromarray(_noise(6, 7)).convert("CMYK"))
    stored = folder_builder.stored_image(str(tmp_path / "cmyk.jpg"))
    with Image.open(io.BytesIO(stored)) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (7, 6))
    _truncated_jpeg(tmp_path / "cut.jpg")
    with pytest.raises(ValueError, match="cut.jpg"):
        folder_builder.stored_image(str(tmp_path / "cut.jpg"))


@pytest.fixture(scope="module")
def mixed_root(tmp_path_factory):
    """Every image in train has its own width, so records can be matched to files."""
    root = tmp_path_factory.mktemp("mixed")
    heron, owl = root / "train" / "HERON", root / "train" / "OWL"
    _save(heron / "rgb.jpg", Image.fromarray(_noise(20, 21)), quality=95)
    _save(heron / "grey.jpg", Image.fromarray(_noise(20, 22, channels=0)), quality=95)
    _save(heron / "cmyk.jpg", Image.fromarray(_noise(20, 23)).convert("CMYK"))
    exif = Image.Exif()
    exif[0x0112] = 6  # Rotate 90 degrees on display: stored 20x24, shown 24x20.
    _save(heron / "rotated.jpg", Image.fromarray(_noise(20, 24)), exif=exif)
    _truncated_jpeg(heron / "cut.jpg")
    _save(owl / "rgba.png", Image.fromarray(_noise(20, 25, channels=4), "RGBA"))
    deep = _noise(20, 26, channels=0).astype(np.uint16) * 257
    _save(owl / "deep.png", Image.fromarray(deep))
    _save(owl / "palette.gif", Image.fromarray(_noise(20, 27)).convert("P"))
    _save(owl / "plain.png", Image.fromarray(_noise(20, 28)))
    (owl / "empty.jpg").write_bytes(b"")
    _save(root / "valid" / "HERON" / "a.jpg", Image.fromarray(_noise(20, 29)))
    _save(root / "valid" / "OWL" / "b.png", Image.fromarray(_noise(20, 30)))
    return root


@pytest.fixture(scope="module")
def prepared_dir(mixed_root, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    assert prepare.prepare_folder(str(mixed_root), "bird_jax_mixed", str(data_dir)) == 0
    return data_dir


def test_folder_builder_writes_array_record_read_through_tfds_and_grain(mixed_root, prepared_dir):
    assert os.listdir(prepared_dir / "bird_jax_mixed" / folder_builder.VERSION)
    assert any(".array_record" in name for name in os.listdir(
        prepared_dir / "bird_jax_mixed" / folder_builder.VERSION
    ))  # fmt: skip
    config = make_config(source="tfds", name="bird_jax_mixed", data_dir=str(prepared_dir))
    info = data.load_splits(config)
    assert info.class_names == ["HERON", "OWL"]
    assert {name: len(split) for name, split in info.splits.items()} == {"train": 8, "valid": 2}
    train = info.splits["train"]
    # Read through Grain, as training does; the labels array agrees with the records.
    records = list(grain.MapDataset.source(train))
    np.testing.assert_array_equal([r["label"] for r in records], train.labels)
    originals = {
        (20, 21): "HERON/rgb.jpg", (20, 22): "HERON/grey.jpg", (20, 23): "HERON/cmyk.jpg",
        (24, 20): "HERON/rotated.jpg", (20, 25): "OWL/rgba.png", (20, 26): "OWL/deep.png",
        (20, 27): "OWL/palette.gif", (20, 28): "OWL/plain.png",
    }  # fmt: skip
    seen = set()
    for record in records:
        image = record["image"]
        assert image.dtype == np.uint8 and image.shape[2] == 3
        name = originals[image.shape[:2]]
        seen.add(name)
        assert info.class_names[record["label"]] == name.split("/")[0]
        expected = data.load_image(mixed_root / "train" / name).astype(int)
        # JPEGs stored as they are decode through OpenCV here and PIL in the folder source.
        assert np.abs(image.astype(int) - expected).max() <= (3 if name.endswith("jpg") else 0)
    assert seen == set(originals.values())  # cut.jpg and empty.jpg were skipped.


def test_tfds_labels_drive_carving_and_subsetting(prepared_dir):
    config = make_config(
        source="tfds", name="bird_jax_mixed", data_dir=str(prepared_dir), eval_split="holdout",
        valid_from_train=0.25, classes=("OWL",), images_per_class=2, split_seed=0,
    )  # fmt: skip
    info = data.load_splits(config)
    assert info.class_names == ["OWL"]
    assert {name: len(split) for name, split in info.splits.items()} == {
        "train": 2, "holdout": 1, "valid": 1
    }  # fmt: skip
    record = info.splits["holdout"][0]
    assert record["label"] == 0 and record["image"].shape[2] == 3


def test_prepared_folder_dataset_is_left_alone(mixed_root, prepared_dir, capsys, monkeypatch):
    monkeypatch.setattr(folder_builder, "folder_builder", lambda *a: pytest.fail("rebuilt"))
    assert prepare.prepare_folder(str(mixed_root), "bird_jax_mixed", str(prepared_dir)) == 0
    assert "prepared already" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["Birds", "9birds", "my-birds", "", "cifar10"])
def test_bad_dataset_names_are_refused(name):
    with pytest.raises(ValueError, match="--name"):
        folder_builder.check_name(name)
