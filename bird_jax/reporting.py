"""Evaluation reports: confusion matrix, per-class metrics, and images for TensorBoard.

Pure NumPy; matplotlib (Agg, no display needed) is imported only when a figure is drawn.
Confusion matrices are [true class, predicted class] counts, as in sklearn.
"""

import csv
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_ANNOTATE_MAX_CLASSES = 20  # write counts into cells up to this many classes
_TICK_LABELS_MAX_CLASSES = 100  # beyond this, names would overlap: axes show class indices


def confusion_matrix(labels, predictions, num_classes: int, mask=None) -> np.ndarray:
    """int64 [num_classes, num_classes] counts of (true, predicted); entries with mask 0 ignored.

    `labels`, `predictions` and `mask` share a shape (any, e.g. [devices, batch]); masked-out
    entries (padding) may hold any value.
    """
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ.")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != labels.shape:
            raise ValueError(f"mask {mask.shape} must have the labels' shape {labels.shape}.")
        labels, predictions = labels[mask != 0], predictions[mask != 0]
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}.")
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.size and not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"{name} must be integer class ids, got dtype {values.dtype}.")
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"{name} must lie in [0, {num_classes}), got [{values.min()}, {values.max()}]."
            )
    pairs = labels.astype(np.int64).ravel() * num_classes + predictions.astype(np.int64).ravel()
    counts = np.bincount(pairs, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _checked_confusion(confusion, class_names: Sequence[str]) -> np.ndarray:
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
    confusion = _checked_confusion(confusion, class_names)
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


def confusion_matrix_image(confusion, class_names: Sequence[str]) -> np.ndarray:
    """The confusion matrix drawn as an RGB uint8 [H, W, 3] image (for TensorBoard and PNG).

    Cell colour is the fraction of the true class (row), so rare classes stay visible; counts are
    written in the cells up to 20 classes; the axes name the classes up to 100 classes and
    show class indices beyond.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    confusion = _checked_confusion(confusion, class_names)
    num_classes = len(class_names)
    row_fractions = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    side = float(np.clip(2.5 + 0.25 * num_classes, 5.0, 20.0))  # inches
    fontsize = float(np.clip(400 / num_classes, 4.0, 10.0))
    figure = Figure(figsize=(side + 1.5, side), dpi=100, layout="constrained")
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    cells = axes.imshow(row_fractions, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    figure.colorbar(cells, ax=axes, fraction=0.046, pad=0.02, label="fraction of true class")
    accuracy = np.trace(confusion) / confusion.sum()
    axes.set_title(f"Confusion matrix: {confusion.sum()} examples, accuracy {accuracy:.2%}")
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    if num_classes <= _TICK_LABELS_MAX_CLASSES:
        ticks = np.arange(num_classes)
        axes.set_xticks(ticks, class_names, rotation=90, fontsize=fontsize)
        axes.set_yticks(ticks, class_names, fontsize=fontsize)
    if num_classes <= _ANNOTATE_MAX_CLASSES:
        for (row, column), count in np.ndenumerate(confusion):
            color = "white" if row_fractions[row, column] > 0.5 else "black"
            axes.text(
                column, row, str(count), ha="center", va="center", color=color, fontsize=fontsize
            )
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def file_stem(split: str) -> str:
    """A split name usable in file names: TFDS slices like 'test[:10%]' become 'test_10'."""
    stem = re.sub(r"[^\w.-]+", "_", split).strip("_")
    if not stem:
        raise ValueError(f"split {split!r} gives no usable file name.")
    return stem


def write_evaluation(
    outdir, split: str, report: dict, confusion, class_names: Sequence[str]
) -> None:
    """Writes eval_<split>.json (the report), confusion_<split>.csv and confusion_<split>.png."""
    from PIL import Image

    confusion = _checked_confusion(confusion, class_names)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    stem = file_stem(split)
    with open(outdir / f"eval_{stem}.json", "w") as file:
        json.dump({"split": split, **report}, file, indent=2)
    with open(outdir / f"confusion_{stem}.csv", "w", newline="") as file:
        rows = csv.writer(file)
        rows.writerow(["true \\ predicted", *class_names])
        rows.writerows(
            [name, *counts] for name, counts in zip(class_names, confusion.tolist(), strict=True)
        )
    image = confusion_matrix_image(confusion, class_names)
    Image.fromarray(image).save(outdir / f"confusion_{stem}.png")


def image_grid(images, ncols: int = 8, padding: int = 2) -> np.ndarray:
    """uint8 [N, H, W, C] images -> one uint8 [H', W', C] grid, for viewing.

    Fills rows of `ncols` images separated by `padding` white pixels.
    """
    pixels = np.asarray(images)
    if pixels.ndim != 4 or len(pixels) == 0 or pixels.dtype != np.uint8:
        raise ValueError(
            f"images must be a non-empty uint8 [N, H, W, C] batch, got {pixels.dtype} "
            f"{pixels.shape}."
        )
    if ncols < 1 or padding < 0:
        raise ValueError(f"ncols must be >= 1 and padding >= 0, got {ncols} and {padding}.")
    count, height, width, channels = pixels.shape
    ncols = min(ncols, count)
    nrows = -(-count // ncols)
    grid = np.full(
        (nrows * (height + padding) - padding, ncols * (width + padding) - padding, channels),
        255,
        dtype=np.uint8,
    )
    for index, image in enumerate(pixels):
        top = (index // ncols) * (height + padding)
        left = (index % ncols) * (width + padding)
        grid[top : top + height, left : left + width] = image
    return grid


def labelled_rows_image(rows: Sequence[tuple[str, np.ndarray]], tile_inches: float = 1.4):
    """Rows of uint8 [N, H, W, 3] images, each titled on its left, as one uint8 RGB image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError("labelled_rows_image needs at least one row.")
    ncols = max(len(images) for _, images in rows)
    figure = Figure(
        figsize=(tile_inches * ncols + 3.0, tile_inches * len(rows)), dpi=100, layout="tight"
    )
    canvas = FigureCanvasAgg(figure)
    axes = figure.subplots(len(rows), ncols, squeeze=False)
    for (title, images), row_axes in zip(rows, axes, strict=True):
        for column, axis in enumerate(row_axes):
            axis.set_xticks([])
            axis.set_yticks([])
            if column < len(images):
                axis.imshow(images[column])
            else:
                axis.axis("off")
        row_axes[0].set_ylabel(title, rotation=0, ha="right", va="center", fontsize=8)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
