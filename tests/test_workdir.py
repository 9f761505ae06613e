"""The run directory: its files are written and read back in one place."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from bird_jax import config as defaults
from bird_jax import figures, scores
from bird_jax.workdir import NotARunError, Workdir, file_stem
from tests.test_scores import confusion, random_predictions


def test_write_evaluation_writes_parseable_files(tmp_path):
    names = ["sparrow", "crow, common", "owl"]  # a comma must survive the CSV
    labels, predictions = random_predictions(3, 60, seed=4)
    counts = confusion(labels, predictions, 3)
    report = scores.classification_report(counts, names)
    outdir = tmp_path / "eval"
    Workdir(outdir).write_evaluation("test[:10%]", report, counts, names, "test at step 7")

    assert json.loads((outdir / "eval_test_10.json").read_text()) == {
        "split": "test[:10%]",
        **report,
    }
    with open(outdir / "confusion_test_10.csv", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0][1:] == names
    assert [row[0] for row in rows[1:]] == names
    np.testing.assert_array_equal(np.array([row[1:] for row in rows[1:]], int), counts)
    with Image.open(outdir / "confusion_test_10.png") as png:
        assert png.mode == "RGB"
        np.testing.assert_array_equal(
            np.asarray(png), figures.confusion_matrix_image(counts, names, "test at step 7")
        )


def test_config_and_labels_round_trip(tmp_path):
    run = Workdir(tmp_path / "run")
    config = defaults.get_config()
    run.write_config(config)
    run.write_labels(["b", "a"])
    restored = run.read_config()
    assert restored.model_name == config.model_name and restored.lr == config.lr
    assert list(restored.data.mean) == list(config.data.mean)
    assert run.read_labels() == ["b", "a"]
    assert run.read_efficiency() == {} and run.read_evaluation("valid") == {}


def test_reading_a_folder_that_is_not_a_run_names_it(tmp_path):
    with pytest.raises(NotARunError, match="not a directory"):
        Workdir(tmp_path / "missing").read_config()
    (tmp_path / "notes").mkdir()
    with pytest.raises(NotARunError, match="config.json not found"):
        Workdir(tmp_path / "notes").read_config()


def test_file_stem_makes_tfds_slices_file_names():
    assert file_stem("test[:10%]") == "test_10"
    with pytest.raises(ValueError, match="usable file name"):
        file_stem("[]")
