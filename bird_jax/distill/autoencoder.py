"""Autoencoder baseline: a small convolutional autoencoder trained on the real images, and a set
of its latent codes per class, decoded into the images to train on.

The encoder halves the image `len(widths)` times (3x3 convolutions, stride 2, ReLU) and maps to
`latent_channels`; the decoder mirrors it with transposed convolutions. Trained with Adam on the
mean squared error of the normalised images. A set stores the decoder's parameters and codes of
real images of each class (drawn at random), as many codes as fit, with the decoder, within the
values of `ipc` images per class; every stored value counts as one byte, as an image set's pixels.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bird_jax import console
from bird_jax.distill.real import RealData, denormalise, sample_per_class
from bird_jax.figures import image_grid


class ConvAutoencoder(nn.Module):
    """Images [N, H, W, 3] -> codes [N, H / 2^d, W / 2^d, latent_channels] -> images."""

    widths: Sequence[int] = (32, 64)
    latent_channels: int = 4

    def setup(self):
        self.down = [nn.Conv(w, (3, 3), strides=2, name=f"down_{i}") for i, w in
                     enumerate(self.widths)]  # fmt: skip
        self.to_code = nn.Conv(self.latent_channels, (1, 1), name="to_code")
        self.from_code = nn.Conv(self.widths[-1], (3, 3), name="from_code")
        outputs = [*self.widths[-2::-1], self.widths[0]]
        self.up = [nn.ConvTranspose(w, (4, 4), strides=(2, 2), name=f"up_{i}") for i, w in
                   enumerate(outputs)]  # fmt: skip
        self.to_image = nn.Conv(3, (3, 3), name="to_image")

    def encode(self, images: jax.Array) -> jax.Array:
        x = images
        for conv in self.down:
            x = nn.relu(conv(x))
        return self.to_code(x)

    def decode(self, codes: jax.Array) -> jax.Array:
        x = nn.relu(self.from_code(codes))
        for conv in self.up:
            x = nn.relu(conv(x))
        return self.to_image(x)

    def __call__(self, images: jax.Array) -> jax.Array:
        return self.decode(self.encode(images))


def _abstract_params(model: ConvAutoencoder, image_shape: tuple[int, ...]):
    """The parameters' shapes and dtypes on images of `image_shape` (nothing is computed)."""
    images = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    return jax.eval_shape(model.init, jax.random.key(0), images)["params"]


def sizes(model: ConvAutoencoder, image_shape: tuple[int, ...]) -> tuple[int, int]:
    """(the decoder's parameter count, values per code) on images of `image_shape`, from
    shapes alone (nothing is computed)."""
    params = _abstract_params(model, image_shape)
    images = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    codes = jax.eval_shape(functools.partial(model.apply, method="encode"), {"params": params},
                           images)  # fmt: skip
    decoder = ("from_code", "to_image", *(f"up_{i}" for i in range(len(model.widths))))
    leaves = [leaf for name in decoder for leaf in jax.tree.leaves(params[name])]
    return sum(int(np.prod(leaf.shape)) for leaf in leaves), int(np.prod(codes.shape[1:]))


def train(
    model: ConvAutoencoder, key: jax.Array, images: np.ndarray, epochs: int, batch_size: int = 64
) -> tuple[dict, float]:
    """Parameters trained `epochs` shuffled epochs with Adam (lr 1e-3) on reconstruction MSE,
    a progress line per epoch; returns them and the last epoch's mean loss."""
    init_key, key = jax.random.split(key)
    params = model.init(init_key, jnp.zeros((1, *images.shape[1:]), jnp.float32))["params"]
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, batch):
        loss, grads = jax.value_and_grad(
            lambda p: jnp.mean((model.apply({"params": p}, batch) - batch) ** 2)
        )(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    loss = float("nan")
    progress = console.Progress(0, epochs, unit="epoch")
    progress.started(0)
    for epoch in range(epochs):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), len(images)))
        losses = []
        for start in range(0, len(order), batch_size):
            batch = jnp.asarray(images[order[start : start + batch_size]])
            params, opt_state, batch_loss = step(params, opt_state, batch)
            losses.append(float(batch_loss))
        loss = float(np.mean(losses))
        console.say(f"autoencoder: {progress.line(epoch + 1, {'loss': loss})}")
    return params, loss


def save_params(path: Path, params) -> None:
    """Writes parameters as msgpack (replaced atomically)."""
    partial = path.with_suffix(".partial")
    partial.write_bytes(flax.serialization.to_bytes(params))
    partial.replace(path)


def load_params(path: Path, model: ConvAutoencoder, image_shape: tuple[int, ...]):
    """Parameters written by save_params for this model and image shape (msgpack: no code
    runs); ValueError naming the file if they do not fit."""
    template = _abstract_params(model, image_shape)
    try:
        params = flax.serialization.from_bytes(template, path.read_bytes())
    except (ValueError, KeyError) as error:
        raise ValueError(
            f"{path} does not hold this config's autoencoder ({error}): use a new --workdir."
        ) from None
    shapes = jax.tree.map(lambda leaf: leaf.shape, (params, template))
    if shapes[0] != shapes[1]:
        raise ValueError(f"{path} holds another autoencoder's shapes: use a new --workdir.")
    return params


class CodeBudget(NamedTuple):
    """Codes a class, the decoder's and a code's values, and all a set stores (decoder + codes)."""

    per_class: int
    decoder_values: int
    code_values: int
    stored_values: int


def code_budget(
    model: ConvAutoencoder, image_shape, num_classes: int, ipc: int, most: int
) -> CodeBudget:
    """The most codes a class that fit, with the decoder, within `ipc` images a class; at most
    `most` (the smallest class). ValueError, before any training, when not even one fits."""
    decoder, code_values = sizes(model, image_shape)
    budget = num_classes * ipc * int(np.prod(image_shape))
    per_class = (budget - decoder) // (num_classes * code_values)
    if per_class < 1:
        raise ValueError(
            f"The autoencoder's decoder ({decoder:,} values) and one {code_values}-value code a "
            f"class exceed the budget of {budget:,} values: raise distill.ipc or shrink "
            "distill.autoencoder_widths / distill.latent_channels."
        )
    per_class = min(per_class, most)
    stored = decoder + num_classes * per_class * code_values
    return CodeBudget(per_class, decoder, code_values, stored)


@functools.partial(jax.jit, static_argnums=0)
def _round_trip(model: ConvAutoencoder, params, images: jax.Array) -> jax.Array:
    return model.apply({"params": params}, images)


class DecodedSet(NamedTuple):
    """m real images a class [C, m, H, W, 3], their decodings, and what the set stores."""

    real: np.ndarray
    decoded: np.ndarray
    budget: CodeBudget


def decoded_set(
    model: ConvAutoencoder, params, key: jax.Array, real: RealData, ipc: int
) -> DecodedSet:
    """m random real images a class through the autoencoder, m the most codes that fit `ipc`
    images a class with the decoder."""
    most = int(real.counts.min())
    budget = code_budget(model, real.image_shape, real.num_classes, ipc, most)
    class_ids = jnp.arange(real.num_classes)
    chosen = sample_per_class(key, real.images, real.counts, class_ids, budget.per_class)
    flat = chosen.reshape(-1, *real.image_shape)
    decoded = np.asarray(_round_trip(model, params, flat)).reshape(chosen.shape)
    return DecodedSet(np.asarray(chosen), decoded, budget)


def picture(decoded_set: DecodedSet, mean, std, shown: int = 8) -> np.ndarray:
    """uint8 picture: per class, a row of real images over a row of their decodings."""
    rows = []
    for real_row, decoded_row in zip(
        decoded_set.real[:, :shown], decoded_set.decoded[:, :shown], strict=True
    ):
        rows += [denormalise(real_row, mean, std), denormalise(decoded_row, mean, std)]
    return image_grid(np.concatenate(rows), ncols=min(shown, decoded_set.real.shape[1]))
