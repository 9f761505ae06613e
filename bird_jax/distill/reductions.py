"""Sets made in one call that store something other than images, decoded into images to train
on: PCA of the real images (`pca`, `pca_class`) and an autoencoder's codes (`autoencoder`).
Each reports what it stores, details for results.json and a picture for the workdir."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import ml_collections
import numpy as np

from bird_jax.distill import autoencoder, pca
from bird_jax.distill.real import RealData


@dataclasses.dataclass(frozen=True)
class Reduction:
    """Decoded `images` [C, m, H, W, 3] (normalised), the values stored (a byte each),
    `details` for results.json and a uint8 `picture` saved as `<picture_name>.png`."""

    images: np.ndarray
    stored_values: int
    details: dict
    picture: np.ndarray
    picture_name: str


def autoencoder_model(settings: ml_collections.ConfigDict) -> autoencoder.ConvAutoencoder:
    return autoencoder.ConvAutoencoder(tuple(settings.autoencoder_widths), settings.latent_channels)


AUTOENCODER_FILE = "autoencoder.msgpack"


def trained_autoencoder(
    config: ml_collections.ConfigDict, key: jax.Array, real: RealData, directory: Path | None
) -> tuple[autoencoder.ConvAutoencoder, dict, float | None]:
    """(model, parameters, final training MSE) of config's autoencoder trained on the real
    images from `key`; read from directory/autoencoder.msgpack where an earlier run of the
    workdir left it (its MSE then None), else written there."""
    model = autoencoder_model(config.distill)
    path = directory / AUTOENCODER_FILE if directory else None
    if path and path.is_file():
        return model, autoencoder.load_params(path, model, real.image_shape), None
    images = real.flat()[0]
    params, loss = autoencoder.train(model, key, images, config.distill.autoencoder_epochs)
    if path:
        autoencoder.save_params(path, params)
    return model, params, loss


def check_budget(config: ml_collections.ConfigDict, num_classes: int, smallest: int) -> None:
    """ValueError if an autoencoder set cannot store its decoder and a code a class within the
    budget (checked before any data is read or network trained)."""
    if config.distill.method in ("autoencoder", "latent_dm"):
        size = config.data.image_size
        autoencoder.code_budget(
            autoencoder_model(config.distill), (size, size, 3), num_classes, config.distill.ipc,
            smallest,
        )  # fmt: skip


def reduce(
    config: ml_collections.ConfigDict,
    key: jax.Array,
    real: RealData,
    directory: Path | None = None,
) -> Reduction:
    """The set of config.distill.method (pca, pca_class or autoencoder) at config.distill.ipc;
    an autoencoder's parameters go to `directory` when given."""
    settings = config.distill
    if settings.method in ("pca", "pca_class"):
        fitted = pca.reduce(real, settings.ipc, per_class=settings.method == "pca_class")
        return Reduction(
            fitted.images,
            fitted.stored_values,
            {"num_components": fitted.num_components},
            pca.eigen_picture(fitted, real),
            "eigen",
        )
    train_key, pick_key = jax.random.split(key)  # latent DM starts from the same codes
    model, params, loss = trained_autoencoder(config, train_key, real, directory)
    decoded = autoencoder.decoded_set(model, params, pick_key, real, settings.ipc)
    details = {
        "codes_per_class": decoded.budget.per_class,
        "decoder_values": decoded.budget.decoder_values,
        "autoencoder_train_mse": loss,
    }
    picture = autoencoder.picture(decoded, real.mean, real.std)
    stored = decoded.budget.stored_values
    return Reduction(decoded.decoded, stored, details, picture, "autoencoder")
