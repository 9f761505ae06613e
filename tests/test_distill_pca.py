"""Tests for the PCA baseline (bird_jax.distill.pca): the components, the storage budget, the
decoded sets, the eigen-bird picture and the command's PCA runs."""

import numpy as np
import pytest

from bird_jax.distill import methods, pca
from bird_jax.distill.run import RESULTS_FILE
from bird_jax.workdir import read_json
from tests.test_distill import _run, config_module, toy_real


def _low_rank(n: int, dim: int, rank: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, rank)) @ rng.normal(size=(rank, dim)) + rng.normal(size=dim)


def _error(vectors: np.ndarray, k: int) -> float:
    fitted = pca.principal_components(vectors, k)
    return float(np.mean((fitted.decode(fitted.encode(vectors)) - vectors) ** 2))


@pytest.mark.parametrize("n, dim", [(12, 30), (40, 6)])  # thin SVD; scatter-matrix eigenvectors
def test_reconstruction_error_falls_with_k_to_zero_at_full_rank(n, dim):
    vectors = np.random.default_rng(1).normal(size=(n, dim))
    rank = min(n - 1, dim)
    errors = [_error(vectors, k) for k in range(rank + 1)]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:], strict=False))
    assert errors[-1] < 1e-20 * errors[0] + 1e-24
    fitted = pca.principal_components(vectors, rank)
    np.testing.assert_allclose(fitted.components @ fitted.components.T, np.eye(rank), atol=1e-10)
    assert np.all(np.diff(fitted.variance) <= 1e-12)  # by decreasing variance
    # The variance along each direction is the sample variance of the coefficients.
    np.testing.assert_allclose(fitted.encode(vectors).var(axis=0, ddof=1), fitted.variance)


def test_both_solvers_find_the_same_components():
    vectors = _low_rank(10, 8, rank=3)  # n > D: eigh; its transpose problem n < D: SVD
    wide = np.concatenate([vectors, np.zeros((10, 20))], axis=1)
    tall, thin = pca.principal_components(vectors, 3), pca.principal_components(wide, 3)
    np.testing.assert_allclose(tall.variance, thin.variance, rtol=1e-9)
    np.testing.assert_allclose(np.abs(tall.components), np.abs(thin.components[:, :8]), atol=1e-9)
    assert _error(vectors, 3) < 1e-20  # rank 3 data: three components recover it


def test_k_is_the_most_components_within_the_budget():
    # 10 images' worth of 12-value images, 5 kept: 12 + k * (12 + 5) <= 120 -> k = 6.
    assert pca.components_within(120, 12, 5, rank=100) == 6
    assert pca.components_within(120, 12, 5, rank=4) == 4  # no more than the data's rank
    assert pca.components_within(12, 12, 5, rank=100) == 0  # one image: the mean alone


@pytest.mark.parametrize("ipc", [1, 2, 3])
@pytest.mark.parametrize("per_class", [True, False])
def test_a_pca_set_stores_no_more_than_ipc_images_a_class(ipc, per_class):
    real = toy_real()  # 3 classes of 6, 9, 7 images, 8 x 8 x 3 = 192 values each
    reduction = pca.reduce(real, ipc, per_class)
    dim = 192
    assert reduction.images.shape == (3, 6, 8, 8, 3)  # the smallest class's count, each class
    assert reduction.stored_values <= 3 * ipc * dim
    k = reduction.num_components
    fits = 3 if per_class else 1
    expected = fits * (dim + k * dim) + 3 * 6 * k  # means, components, kept images' coefficients
    assert reduction.stored_values == expected
    assert len(reduction.components) == fits


def test_per_class_pca_at_one_image_is_each_class_mean():
    real = toy_real()
    reduction = pca.reduce(real, 1, per_class=True)
    assert reduction.num_components == 0
    for c, count in enumerate(real.counts):
        mean = real.images[c, :count].mean(axis=0)
        np.testing.assert_allclose(reduction.images[c], np.broadcast_to(mean, (6, *mean.shape)),
                                   atol=1e-5)  # fmt: skip


def test_a_larger_budget_decodes_closer_to_the_real_images():
    real = toy_real()
    kept = real.images[:, :6]
    errors = [np.mean((pca.reduce(real, ipc, False).images - kept) ** 2) for ipc in (1, 2, 4)]
    assert errors[0] > errors[1] > errors[2]


def test_the_eigen_picture_has_a_row_per_fit_of_mean_and_components():
    real = toy_real()
    for per_class, rows in ((True, 3), (False, 1)):
        picture = pca.eigen_picture(pca.reduce(real, 2, per_class), real, shown=4)
        assert picture.dtype == np.uint8
        assert picture.shape[:2] == (rows * 8 + (rows - 1) * 2, 5 * 8 + 4 * 2)


def test_pca_runs_write_the_picture_and_count_what_they_store(tmp_path):
    results, workdir = _run(tmp_path, "pca", method="pca", iterations=0)
    assert (workdir.path / "eigen.png").is_file() and (workdir.path / "synthetic.png").is_file()
    dim, k = 16 * 16 * 3, results["num_components"]
    assert results["iterations"] == 0 and results["evaluations"][-1]["model"] == "convnet"
    assert read_json(workdir.path / RESULTS_FILE)["num_components"] == k > 0
    # Mean, k components and coefficients, within 2 images for each of the 10 digits.
    assert dim + k * dim < results["storage_bytes"] <= 10 * 2 * dim


@pytest.mark.parametrize(
    "variant, method, ipc", [("birds_ipc10", "pca", 10), ("class_cifar10_ipc1", "pca_class", 1)]
)
def test_shipped_pca_configs(variant, method, ipc):
    config = config_module("pca").get_config(variant)
    methods.check_config(config)
    assert (config.distill.method, config.distill.ipc) == (method, ipc)
