"""Eigen-birds: principal components of the training images, and PCA as a storage-matched set.

As eigenfaces: each image is a vector of H * W * 3 normalised pixels; the mean image and the
directions of largest variance ("eigen-birds") describe a class (`pca_class`) or all classes at
once (`pca`). As a baseline beside distillation, a PCA set stores the mean, k components and
each kept image's k coefficients, with k the largest that keeps the stored values within the
budget of `ipc` images per class, and trains on the images decoded from them. Every stored value
counts as one byte, as an image set's pixels do (uint8). At ipc 1 `pca_class` stores only each
class's mean: its set is the mean bird, repeated.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bird_jax.distill.real import RealData, denormalise
from bird_jax.figures import image_grid


@dataclasses.dataclass(frozen=True)
class Components:
    """`mean` [D], orthonormal `components` [k, D] by decreasing variance, `variance` [k]."""

    mean: np.ndarray
    components: np.ndarray
    variance: np.ndarray

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """[n, D] -> coefficients [n, k]."""
        return (vectors - self.mean) @ self.components.T

    def decode(self, coefficients: np.ndarray) -> np.ndarray:
        """[n, k] -> [n, D]."""
        return self.mean + coefficients @ self.components


def principal_components(vectors: np.ndarray, k: int) -> Components:
    """The mean and top-k principal directions of the rows of `vectors` [n, D] (float64 math).

    k is capped at the rank of the centred rows (at most n - 1 and D).
    """
    vectors = np.asarray(vectors, np.float64)
    mean = vectors.mean(axis=0)
    centred = vectors - mean
    n, dim = centred.shape
    k = max(0, min(k, n - 1, dim))
    if n <= dim:  # thin SVD of the data: n x n work
        _, singular, directions = np.linalg.svd(centred, full_matrices=False)
        variance = singular**2 / max(n - 1, 1)
    else:  # eigenvectors of the D x D scatter matrix
        eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred)
        order = np.argsort(eigenvalues)[::-1]
        directions, variance = eigenvectors[:, order].T, eigenvalues[order] / (n - 1)
    return Components(mean, directions[:k], variance[:k])


def components_within(budget: int, dim: int, kept: int, rank: int) -> int:
    """The most components k with dim (mean) + k * (dim + kept) stored values <= budget."""
    return max(0, min((budget - dim) // (dim + kept), rank))


@dataclasses.dataclass(frozen=True)
class PCASet:
    """Decoded `images` [C, m, H, W, 3] (normalised), the values stored, and the fitted
    components (one per class for pca_class, one shared for pca)."""

    images: np.ndarray
    stored_values: int
    num_components: int
    components: list[Components]


def reduce(real: RealData, ipc: int, per_class: bool) -> PCASet:
    """The storage-matched PCA set of `real`: each class's first m = min(counts) images,
    decoded from the largest k whose stored values fit `ipc` images per class."""
    shape = real.image_shape
    dim, kept = int(np.prod(shape)), int(real.counts.min())
    vectors = [real.images[c, :n].reshape(n, dim) for c, n in enumerate(real.counts)]
    if per_class:
        k = components_within(ipc * dim, dim, kept, kept - 1)
        fitted = [principal_components(v, k) for v in vectors]
        stored = sum(dim + p.components.size + kept * len(p.components) for p in fitted)
        decoded = [p.decode(p.encode(v[:kept])) for p, v in zip(fitted, vectors, strict=True)]
    else:
        k = components_within(real.num_classes * ipc * dim, dim, real.num_classes * kept, dim)
        shared = principal_components(np.concatenate(vectors), k)
        fitted = [shared]
        stored = dim + shared.components.size + real.num_classes * kept * len(shared.components)
        decoded = [shared.decode(shared.encode(v[:kept])) for v in vectors]
    images = np.stack(decoded).reshape(real.num_classes, kept, *shape).astype(np.float32)
    return PCASet(images, int(stored), len(fitted[0].components), fitted)


def _signed_pixels(direction: np.ndarray, shape) -> np.ndarray:
    """A component as a picture: 0 at mid-grey, its largest |value| at black or white."""
    scaled = 0.5 + 0.5 * direction / max(float(np.abs(direction).max()), 1e-12)
    return np.round(np.clip(scaled, 0, 1).reshape(shape) * 255).astype(np.uint8)


def eigen_picture(reduction: PCASet, real: RealData, shown: int = 9) -> np.ndarray:
    """uint8 picture, one row per fitted PCA: the mean image, then its top `shown` components
    (grey 0, black and white the two signs) where it has them."""
    shape = real.image_shape
    rows = []
    for fitted in reduction.components:
        mean = denormalise(fitted.mean.reshape(shape), real.mean, real.std)
        row = [mean] + [_signed_pixels(d, shape) for d in fitted.components[:shown]]
        row += [np.full_like(mean, 255)] * (shown + 1 - len(row))  # blank where k < shown
        rows.extend(row)
    return image_grid(np.stack(rows), ncols=shown + 1)
