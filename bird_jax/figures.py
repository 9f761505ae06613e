"""Pictures for people: the confusion matrix, image grids and labelled rows of images.

Each returns an RGB uint8 [H, W, 3] array (for TensorBoard and PNG files); matplotlib (Agg, no
display needed) is imported only when a figure is drawn.
"""

from collections.abc import Sequence

import numpy as np

from bird_jax.scores import checked_confusion

_ANNOTATE_MAX_CLASSES = 20  # write counts into cells up to this many classes
_TICK_LABELS_MAX_CLASSES = 100  # beyond this, names would overlap: axes show class indices


def confusion_matrix_image(
    confusion, class_names: Sequence[str], title: str = "Confusion matrix"
) -> np.ndarray:
    """The confusion matrix drawn as an RGB uint8 [H, W, 3] image (for TensorBoard and PNG).

    Cell colour is the fraction of the true class (row), so rare classes stay visible; counts are
    written in the cells up to 20 classes; the axes name the classes up to 100 classes and
    show class indices beyond. `title` (e.g. the split and step) heads the figure.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    confusion = checked_confusion(confusion, class_names)
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
    axes.set_title(f"{title}: {confusion.sum()} examples, accuracy {accuracy:.2%}")
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
