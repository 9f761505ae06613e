"""Evaluation reports against sklearn, and the files and images they produce."""

import csv
import json

import numpy as np
import pytest
from PIL import Image
from sklearn import metrics

from bird_jax import reporting


def random_predictions(num_classes, size, seed, absent=()):
    """Labels and ~60%-correct predictions; classes in `absent` occur in neither."""
    rng = np.random.default_rng(seed)
    present = np.setdiff1d(np.arange(num_classes), absent)
    labels = rng.choice(present, size)
    predictions = np.where(rng.random(size) < 0.6, labels, rng.choice(present, size))
    return labels, predictions


def test_confusion_matrix_matches_sklearn_and_ignores_masked_entries():
    labels, predictions = random_predictions(7, 300, seed=0)
    mask = np.random.default_rng(1).random(300) < 0.8
    padded_labels = np.where(mask, labels, -1)  # padding may hold out-of-range ids
    confusion = reporting.confusion_matrix(
        padded_labels.reshape(3, 100), predictions.reshape(3, 100), 7, mask=mask.reshape(3, 100)
    )
    expected = metrics.confusion_matrix(labels[mask], predictions[mask], labels=range(7))
    assert confusion.dtype == np.int64
    np.testing.assert_array_equal(confusion, expected)
    assert confusion.sum() == mask.sum()


@pytest.mark.parametrize(
    ("labels", "predictions", "message"),
    [
        ([0, 3], [0, 1], "labels must lie in"),
        ([0, 1], [0, -1], "predictions must lie in"),
        ([0.0, 1.0], [0, 1], "integer class ids"),
        ([0, 1, 2], [0, 1], "differ"),
    ],
)
def test_confusion_matrix_rejects_bad_labels(labels, predictions, message):
    with pytest.raises(ValueError, match=message):
        reporting.confusion_matrix(np.array(labels), np.array(predictions), 3)


@pytest.mark.parametrize("absent", [(), (2, 5)])
def test_classification_report_matches_sklearn(absent):
    num_classes = 8
    labels, predictions = random_predictions(num_classes, 400, seed=2, absent=absent)
    predictions[:3] = 5  # with absent=(2, 5): class 5 is predicted but has no support
    names = [f"bird {i}" for i in range(num_classes)]
    report = reporting.classification_report(
        reporting.confusion_matrix(labels, predictions, num_classes), names
    )

    assert report["num_examples"] == 400
    assert report["accuracy"] == pytest.approx(metrics.accuracy_score(labels, predictions))
    for average in ("precision", "recall", "f1"):
        score = getattr(metrics, f"{average}_score")
        expected = score(labels, predictions, average="macro", zero_division=0)
        assert report[f"macro_{average}"] == pytest.approx(expected)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        labels, predictions, labels=range(num_classes), zero_division=0
    )
    for i, name in enumerate(names):
        per_class = report["per_class"][name]
        assert per_class["precision"] == pytest.approx(precision[i])
        assert per_class["recall"] == pytest.approx(recall[i])
        assert per_class["f1"] == pytest.approx(f1[i])
        assert per_class["accuracy"] == per_class["recall"]
        assert per_class["support"] == support[i]


def test_macro_scores_skip_only_classes_never_seen_nor_predicted():
    # "c" has no support but is predicted once: its zeros count. "d" never shows up: skipped.
    report = reporting.classification_report(
        reporting.confusion_matrix([0, 0, 1, 1], [0, 2, 1, 1], 4), ["a", "b", "c", "d"]
    )
    assert report["macro_recall"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert report["per_class"]["c"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "accuracy": 0.0,
        "support": 0,
    }


@pytest.mark.parametrize(
    ("confusion", "names", "message"),
    [
        (np.eye(3), ["a", "b"], "2 class names for 3 classes"),
        (np.ones((2, 3)), ["a", "b"], "square"),
        (np.eye(2), ["a", "a"], "unique"),
        (-np.eye(2), ["a", "b"], "non-negative"),
        (np.zeros((2, 2)), ["a", "b"], "empty"),
    ],
)
def test_classification_report_rejects_bad_input(confusion, names, message):
    with pytest.raises(ValueError, match=message):
        reporting.classification_report(confusion, names)


@pytest.mark.parametrize("num_classes", [3, 50])
def test_confusion_matrix_image_is_rgb_uint8(num_classes):
    labels, predictions = random_predictions(num_classes, 500, seed=3)
    confusion = reporting.confusion_matrix(labels, predictions, num_classes)
    image = reporting.confusion_matrix_image(confusion, [f"c{i}" for i in range(num_classes)])
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert min(image.shape[:2]) >= 400
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 10  # something was drawn


def test_write_evaluation_writes_parseable_files(tmp_path):
    names = ["sparrow", "crow, common", "owl"]  # a comma must survive the CSV
    labels, predictions = random_predictions(3, 60, seed=4)
    confusion = reporting.confusion_matrix(labels, predictions, 3)
    report = reporting.classification_report(confusion, names)
    outdir = tmp_path / "eval"
    reporting.write_evaluation(outdir, "test[:10%]", report, confusion, names)

    assert json.loads((outdir / "eval_test_10.json").read_text()) == {
        "split": "test[:10%]",
        **report,
    }
    with open(outdir / "confusion_test_10.csv", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0][1:] == names
    assert [row[0] for row in rows[1:]] == names
    np.testing.assert_array_equal(np.array([row[1:] for row in rows[1:]], int), confusion)
    with Image.open(outdir / "confusion_test_10.png") as png:
        assert png.mode == "RGB"
        np.testing.assert_array_equal(
            np.asarray(png), reporting.confusion_matrix_image(confusion, names)
        )


def test_image_grid_lays_out_rows_with_padding():
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, size=(5, 4, 6, 3), dtype=np.uint8)

    grid = reporting.image_grid(pixels, ncols=2, padding=1)

    assert grid.dtype == np.uint8 and grid.shape == (3 * 4 + 2, 2 * 6 + 1, 3)
    for index, image in enumerate(pixels):
        top, left = (index // 2) * 5, (index % 2) * 7
        np.testing.assert_array_equal(grid[top : top + 4, left : left + 6], image)
    assert (grid[4, :] == 255).all() and (grid[10:, 7:] == 255).all()  # padding, empty slot


def test_image_grid_rejects_float_images():
    with pytest.raises(ValueError, match="uint8"):
        reporting.image_grid(np.zeros((1, 2, 2, 3), np.float32))
