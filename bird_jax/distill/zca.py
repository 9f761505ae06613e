"""ZCA whitening of images, as MTT and FRePo learn CIFAR sets in a whitened space.

Fitted on the normalised training images flattened to D values: with the covariance
C = U diag(lambda) U^T (unbiased, as kornia's `ZCAWhitening` the MTT code uses), an image x maps
to (x - mean) U diag((lambda + reg)^-1/2) U^T, and `colour` inverts it. With fewer images than
values (bird photos at 64 px) the covariance has rank r < D: only its r eigenvectors with an
eigenvalue above rounding are kept ([D, r], through the N x N Gram matrix), and the rest of the
space (eigenvalue 0) is scaled by reg^-1/2. FRePo's own code whitens as KIP's (each image
standardised first, the ridge 0.1 x the mean eigenvalue); bird_jax uses MTT's for both.
A set learned in this space is saved with its whitening (whitening.npz), so its evaluation
whitens the real test images the same way and its pictures are coloured back to pixels.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

FILE = "whitening.npz"
_BLOCK = 4096  # images at a time: the N x D temporaries stay small


def describe(reg: float | None) -> str:
    """The space of ridge `reg` in words (None: not whitened)."""
    return "unwhitened images" if reg is None else f"ZCA-whitened images (ridge {reg})"


@dataclasses.dataclass(frozen=True)
class Whitening:
    """`mean` [D], `basis` [D, r] (orthonormal eigenvectors), `eigenvalues` [r], ridge `reg`."""

    mean: np.ndarray
    basis: np.ndarray
    eigenvalues: np.ndarray
    reg: float

    def _apply(self, images, shift: np.ndarray, scales: np.ndarray, rest: float,
               offset: np.ndarray) -> np.ndarray:  # fmt: skip
        """(x - shift) @ (U diag(scales) U^T + rest (I - U U^T)) + offset per image, float32,
        a block of images at a time."""
        images = np.asarray(images, np.float32)
        flat = images.reshape(-1, self.mean.size)
        out = np.empty_like(flat)
        for begin in range(0, len(flat), _BLOCK):
            block = flat[begin : begin + _BLOCK] - shift
            coefficients = block @ self.basis
            out[begin : begin + _BLOCK] = (
                block * rest + (coefficients * (scales - rest)) @ self.basis.T + offset
            )
        return out.reshape(images.shape)

    def whiten(self, images) -> np.ndarray:
        """Normalised images [..., H, W, 3] -> whitened, same shape."""
        scales = 1.0 / np.sqrt(self.eigenvalues + self.reg)
        zero = np.zeros_like(self.mean)
        return self._apply(images, self.mean, scales, 1.0 / np.sqrt(self.reg), zero)

    def colour(self, images) -> np.ndarray:
        """Whitened images -> the normalised space they were whitened from (the inverse)."""
        scales = np.sqrt(self.eigenvalues + self.reg)
        zero = np.zeros_like(self.mean)
        return self._apply(images, zero, scales, float(np.sqrt(self.reg)), self.mean)


def check_reg(reg: float) -> None:
    """ValueError unless the ridge `reg` is positive."""
    if reg <= 0:
        raise ValueError(f"distill.zca_reg must be > 0 (the ridge on the eigenvalues), got {reg}.")


def fit(images: np.ndarray, reg: float) -> Whitening:
    """The whitening of `images` [N, H, W, 3] with ridge `reg` added to the eigenvalues."""
    check_reg(reg)
    flat = np.asarray(images, np.float32).reshape(len(images), -1)
    count, dims = flat.shape
    if count < 2:
        raise ValueError(f"ZCA whitening needs at least 2 images to fit, got {count}.")
    mean = flat.mean(axis=0, dtype=np.float64).astype(np.float32)
    if count > dims:  # the covariance itself, D x D, summed in float64 a block at a time
        covariance = np.zeros((dims, dims), np.float64)
        for begin in range(0, count, _BLOCK):
            block = (flat[begin : begin + _BLOCK] - mean).astype(np.float64)
            covariance += block.T @ block
        eigenvalues, basis = np.linalg.eigh(covariance / (count - 1))
    else:  # through the N x N Gram matrix: its eigenvectors map to C's with the same values
        centred = (flat - mean).astype(np.float64)
        eigenvalues, vectors = np.linalg.eigh(centred @ centred.T / (count - 1))
        kept = eigenvalues > dims * np.finfo(np.float64).eps * eigenvalues.max()  # not rounding
        eigenvalues, vectors = eigenvalues[kept], vectors[:, kept]
        basis = (centred.T @ vectors) / np.sqrt((count - 1) * eigenvalues)
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
