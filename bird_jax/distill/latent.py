"""DM in an autoencoder's latent space: the set is codes, decoded into images to train on.

As the autoencoder baseline, each class gets as many codes as fit with the decoder within the
values of `ipc` images a class; the codes start from those of random real images of the class
(or N(0, 1) noise) and learn with DM's loss, computed on their decodings (the decoder fixed).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from bird_jax.distill.autoencoder import ConvAutoencoder
from bird_jax.distill.dm import DistributionMatching
from bird_jax.distill.real import RealData, sample_per_class


class LatentDistributionMatching(DistributionMatching):
    """DM on codes [C, m, h, w, k] through a trained autoencoder's decoder."""

    def __init__(self, model, image_shape, *, autoencoder: ConvAutoencoder, params, **kwargs):
        self.autoencoder, self.autoencoder_params = autoencoder, params
        super().__init__(model, image_shape, **kwargs)

    def _apply(self, method: str, arrays: jax.Array) -> jax.Array:
        """The autoencoder's `method` (encode or decode) over leading axes [..., h, w, c]."""
        flat = arrays.reshape(-1, *arrays.shape[-3:])
        out = self.autoencoder.apply({"params": self.autoencoder_params}, flat, method=method)
        return out.reshape(*arrays.shape[:-3], *out.shape[1:])

    def render(self, synthetic: jax.Array) -> jax.Array:
        return self._apply("decode", synthetic)

    def images(self, synthetic: np.ndarray) -> np.ndarray:
        return np.asarray(_on_host(self, "decode", jnp.asarray(synthetic)))

    def initial_codes(self, key: jax.Array, real: RealData, per_class: int, init: str):
        """[C, per_class, h, w, k]: codes of distinct real images of each class, or N(0, 1)."""
        if init == "noise":
            first = real.images[:, :per_class]
            shape = jax.eval_shape(functools.partial(self._apply, "encode"), first).shape
            return np.asarray(jax.random.normal(key, shape))
        class_ids = jnp.arange(real.num_classes)
        chosen = sample_per_class(key, real.images, real.counts, class_ids, per_class)
        return np.asarray(_on_host(self, "encode", chosen))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _on_host(method: LatentDistributionMatching, name: str, arrays: jax.Array) -> jax.Array:
    return method._apply(name, arrays)
