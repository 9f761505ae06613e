"""Classification scores from a confusion matrix [true class, predicted class] (as in sklearn)."""

from collections.abc import Sequence

import numpy as np


def checked_confusion(confusion, class_names: Sequence[str]) -> np.ndarray:
    confusion = np.asarray(confusion)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be a square matrix, got shape {confusion.shape}.")
    if len(class_names) != confusion.shape[0]:
        raise ValueError(f"{len(class_names)} class names for {confusion.shape[0]} classes.")
    if len(set(class_names)) != len(class_names):
        raise ValueError("class names must be unique.")
    if (confusion < 0).any() or (confusion != np.round(confusion)).any():
        raise ValueError("confusion must hold non-negative counts.")
    if confusion.sum() == 0:
        raise ValueError("confusion is empty: no examples were evaluated.")
    return confusion.astype(np.int64)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (sklearn's zero_division=0)."""
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)


def classification_report(confusion, class_names: Sequence[str]) -> dict:
    """Accuracy, macro precision/recall/F1 and per-class metrics of a confusion matrix.

    Like sklearn's defaults (zero_division=0, labels=None): an undefined ratio is 0, and the
    macro averages run over the classes that occur as a label or a prediction; classes with
    neither (support 0, never predicted) are reported per class with zeros and left out of the
    averages. Per-class accuracy is the class's recall.
    """
    confusion = checked_confusion(confusion, class_names)
    true_positives = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    precision = _ratio(true_positives, predicted)
    recall = _ratio(true_positives, support)
    f1 = _ratio(2 * true_positives, support + predicted)
    present = (support + predicted) > 0
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "accuracy": float(recall[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    }
    return {
        "num_examples": int(support.sum()),
        "accuracy": float(true_positives.sum() / support.sum()),
        "macro_precision": float(precision[present].mean()),
        "macro_recall": float(recall[present].mean()),
        "macro_f1": float(f1[present].mean()),
        "per_class": per_class,
    }
