"""Pictures: the confusion matrix image and image grids."""

import numpy as np
import pytest

from bird_jax import figures
from tests.test_scores import confusion, random_predictions


@pytest.mark.parametrize("num_classes", [3, 50])
def test_confusion_matrix_image_is_rgb_uint8(num_classes):
    labels, predictions = random_predictions(num_classes, 500, seed=3)
    counts = confusion(labels, predictions, num_classes)
    image = figures.confusion_matrix_image(counts, [f"c{i}" for i in range(num_classes)])
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert min(image.shape[:2]) >= 400
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 10  # something was drawn


def test_image_grid_lays_out_rows_with_padding():
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, size=(5, 4, 6, 3), dtype=np.uint8)

    grid = figures.image_grid(pixels, ncols=2, padding=1)

    assert grid.dtype == np.uint8 and grid.shape == (3 * 4 + 2, 2 * 6 + 1, 3)
    for index, image in enumerate(pixels):
        top, left = (index // 2) * 5, (index % 2) * 7
        np.testing.assert_array_equal(grid[top : top + 4, left : left + 6], image)
    assert (grid[4, :] == 255).all() and (grid[10:, 7:] == 255).all()  # padding, empty slot


def test_image_grid_rejects_float_images():
    with pytest.raises(ValueError, match="uint8"):
        figures.image_grid(np.zeros((1, 2, 2, 3), np.float32))
