"""Classification scores against sklearn, and the eval step's confusion counts."""

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics

from bird_jax import scores
from bird_jax.evaluate import confusion_counts


def random_predictions(num_classes, size, seed, absent=()):
    """Labels and ~60%-correct predictions; classes in `absent` occur in neither."""
    rng = np.random.default_rng(seed)
    present = np.setdiff1d(np.arange(num_classes), absent)
    labels = rng.choice(present, size)
    predictions = np.where(rng.random(size) < 0.6, labels, rng.choice(present, size))
    return labels, predictions


def confusion(labels, predictions, num_classes):
    """sklearn's confusion matrix [true, predicted] over all classes."""
    return metrics.confusion_matrix(labels, predictions, labels=range(num_classes))


def test_confusion_counts_match_sklearn_and_ignore_padding():
    labels, predictions = random_predictions(7, 300, seed=0)
    mask = np.random.default_rng(1).random(300) < 0.8
    padded_labels = np.where(mask, labels, 0)  # padding holds label 0 in eval batches
    counts = confusion_counts(
        jnp.asarray(padded_labels), jnp.asarray(predictions), jnp.asarray(mask, jnp.float32), 7
    )
    expected = confusion(labels[mask], predictions[mask], 7)
    np.testing.assert_array_equal(np.rint(np.asarray(counts)).astype(int), expected)
    assert np.asarray(counts).sum() == mask.sum()


@pytest.mark.parametrize("absent", [(), (2, 5)])
def test_classification_report_matches_sklearn(absent):
    num_classes = 8
    labels, predictions = random_predictions(num_classes, 400, seed=2, absent=absent)
    predictions[:3] = 5  # with absent=(2, 5): class 5 is predicted but has no support
    names = [f"bird {i}" for i in range(num_classes)]
    report = scores.classification_report(confusion(labels, predictions, num_classes), names)

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
    report = scores.classification_report(
        confusion([0, 0, 1, 1], [0, 2, 1, 1], 4), ["a", "b", "c", "d"]
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
        scores.classification_report(confusion, names)
