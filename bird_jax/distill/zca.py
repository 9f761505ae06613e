"""ZCA whitening of images, as MTT and FRePo learn CIFAR sets in a whitened space.

Fitted on the normalised training images flattened to D values: with the covariance
C = U diag(lambda) U^T (unbiased, as kornia's `ZCAWhitening` the MTT code uses), an image x maps
to (x - mean) U diag((lambda + reg)^-1/2) U^T, and `colour` inverts it. Only the r eigenvectors
with a non-zero eigenvalue are kept ([D, r]; r < D when there are fewer images than values, as
for bird photos at 64 px): the rest of the space has eigenvalue 0 and is scaled by reg^-1/2.
A set learned in this space is saved with its whitening (whitening.npz), so its evaluation
whitens the real test images the same way and its pictures are coloured back to pixels.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

FILE = "whitening.npz"
_RELATIVE_RANK_TOLERANCE = 1e-6  # eigenvalues below this x the largest count as zero


@dataclasses.dataclass(frozen=True)
class Whitening:
    """`mean` [D], `basis` [D, r] (orthonormal eigenvectors), `eigenvalues` [r], ridge `reg`."""

    mean: np.ndarray
    basis: np.ndarray
    eigenvalues: np.ndarray
    reg: float

    def _apply(self, flat: np.ndarray, scales: np.ndarray, rest: float) -> np.ndarray:
        """flat @ (U diag(scales) U^T + rest (I - U U^T)), in float32."""
        coefficients = flat @ self.basis
        return flat * rest + (coefficients * (scales - rest)) @ self.basis.T

    def whiten(self, images) -> np.ndarray:
        """Normalised images [..., H, W, 3] -> whitened, same shape."""
        images = np.asarray(images, np.float32)
        flat = images.reshape(-1, self.mean.size) - self.mean
        scales = 1.0 / np.sqrt(self.eigenvalues + self.reg)
        return self._apply(flat, scales, 1.0 / np.sqrt(self.reg)).reshape(images.shape)

    def colour(self, images) -> np.ndarray:
        """Whitened images -> the normalised space they were whitened from (the inverse)."""
        images = np.asarray(images, np.float32)
        flat = images.reshape(-1, self.mean.size)
        scales = np.sqrt(self.eigenvalues + self.reg)
        coloured = self._apply(flat, scales, float(np.sqrt(self.reg))) + self.mean
        return coloured.reshape(images.shape)


def fit(images: np.ndarray, reg: float) -> Whitening:
    """The whitening of `images` [N, H, W, 3] with ridge `reg` added to the eigenvalues."""
    if reg <= 0:
        raise ValueError(f"distill.zca_reg must be > 0 (the ridge on the eigenvalues), got {reg}.")
    flat = np.asarray(images, np.float32).reshape(len(images), -1)
    count, dims = flat.shape
    if count < 2:
        raise ValueError(f"ZCA whitening needs at least 2 images to fit, got {count}.")
    mean = flat.mean(axis=0)
    centred = flat - mean
    if count > dims:  # the covariance itself, D x D
        covariance = (centred.T @ centred).astype(np.float64) / (count - 1)
        eigenvalues, basis = np.linalg.eigh(covariance)
    else:  # through the N x N Gram matrix: its eigenvectors map to C's with the same values
        gram = (centred @ centred.T).astype(np.float64) / (count - 1)
        eigenvalues, vectors = np.linalg.eigh(gram)
        kept = eigenvalues > _RELATIVE_RANK_TOLERANCE * eigenvalues.max()
        eigenvalues, vectors = eigenvalues[kept], vectors[:, kept]
        basis = (centred.T.astype(np.float64) @ vectors) / np.sqrt((count - 1) * eigenvalues)
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    return Whitening(mean, basis.astype(np.float32), eigenvalues.astype(np.float32), float(reg))


def save(whitening: Whitening, directory: str | Path) -> None:
    """Writes whitening.npz into `directory` (replaced atomically)."""
    path = Path(directory) / FILE
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as file:
        np.savez(file, mean=whitening.mean, basis=whitening.basis,
                 eigenvalues=whitening.eigenvalues, reg=np.float64(whitening.reg))  # fmt: skip
    partial.replace(path)


def load(directory: str | Path) -> Whitening:
    """Reads whitening.npz (no pickle); ValueError saying what is wrong."""
    path = Path(directory) / FILE
    try:
        with np.load(path, allow_pickle=False) as arrays:
            whitening = Whitening(
                arrays["mean"], arrays["basis"], arrays["eigenvalues"], float(arrays["reg"])
            )
    except (ValueError, KeyError, OSError) as error:
        raise ValueError(f"{path} is not a whitening: unreadable ({error}).") from None
    dims, rank = whitening.basis.shape
    if whitening.mean.shape != (dims,) or whitening.eigenvalues.shape != (rank,):
        raise ValueError(
            f"{path} is not a whitening: mean {whitening.mean.shape}, basis "
            f"{whitening.basis.shape} and eigenvalues {whitening.eigenvalues.shape} disagree."
        )
    return whitening
