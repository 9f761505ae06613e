"""Vision Transformer (Dosovitskiy et al., "An Image is Worth 16x16 Words", 2021), with timm's
parameter layout (`vit_base_patch16_224`)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bird_jax.models.common import (
    Dtype,
    check_positive,
    check_rate,
    classifier,
    drop_path,
)
from bird_jax.models.convnext import drop_path_rates

# (width, depth, heads) of each size (patch 16).
ARCHITECTURES = {
    "ti16": (192, 12, 3),
    "s16": (384, 12, 6),
    "b16": (768, 12, 12),
}

# Truncated at +-2 standard deviations, as ConvNeXt's.
kernel_init = nn.initializers.truncated_normal(stddev=0.02)


def _grid_side(tokens: int, what: str) -> int:
    side = int(np.sqrt(tokens) + 0.5)
    if side * side != tokens:
        raise ValueError(f"{what} has {tokens} patch tokens, not a square grid.")
    return side


def resample_position_embeddings(array: np.ndarray, target_shape: tuple[int, ...]) -> np.ndarray:
    """Position embeddings [1, 1 + n*n, width] of a checkpoint for a model whose embeddings
    have `target_shape` [1, 1 + m*m, width] (trained at another image size): the n x n grid is
    resized bicubically with antialiasing, as timm's `resample_abs_pos_embed`; the class
    token's embedding is kept.

    Raises ValueError when the widths differ (another ViT size) or a grid is not square.
    """
    if array.ndim != 3 or len(target_shape) != 3 or array.shape[0] != 1 or target_shape[0] != 1:
        raise ValueError(
            f"Position embeddings must be [1, tokens, width], got {tuple(array.shape)} for "
            f"{tuple(target_shape)}."
        )
    if array.shape[2] != target_shape[2]:
        raise ValueError(
            f"The checkpoint's position embeddings are {array.shape[2]} wide, the model's "
            f"{target_shape[2]}: the checkpoint is of another ViT width."
        )
    if tuple(array.shape) == tuple(target_shape):
        return array
    source = _grid_side(array.shape[1] - 1, "The checkpoint's position embedding")
    target = _grid_side(target_shape[1] - 1, "The model's position embedding")
    grid = array[0, 1:].reshape(source, source, -1).astype(np.float32)
    grid = jax.image.resize(grid, (target, target, grid.shape[-1]), "cubic", antialias=True)
    grid = np.asarray(grid, array.dtype).reshape(1, target * target, -1)
    return np.concatenate([array[:, :1], grid], axis=1)


def dense(features: int, dtype: Dtype, name: str) -> nn.Dense:
    """Dense layer with float32 parameters computing in `dtype`."""
    return nn.Dense(
        features, kernel_init=kernel_init, dtype=dtype, param_dtype=jnp.float32, name=name
    )


class Attention(nn.Module):
    """Multi-head self-attention: one fused `qkv` Dense laid out as timm's
    `qkv(x).reshape(B, N, 3, heads, head_dim)`, softmax in float32, then the `proj` Dense."""

    num_heads: int
    dropout_rate: float
    dtype: Dtype

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        batch, tokens, width = x.shape
        qkv = dense(3 * width, self.dtype, name="qkv")(x)
        qkv = qkv.reshape(batch, tokens, 3, self.num_heads, width // self.num_heads)
        y = jax.nn.dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])
        y = dense(width, self.dtype, name="proj")(y.reshape(batch, tokens, width))
        return nn.Dropout(self.dropout_rate, deterministic=not train)(y)


class Mlp(nn.Module):
    """Dense -> exact GELU -> dropout -> Dense -> dropout."""

    hidden: int
    dropout_rate: float
    dtype: Dtype

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        dropout = nn.Dropout(self.dropout_rate, deterministic=not train)
        y = nn.gelu(dense(self.hidden, self.dtype, name="fc1")(x), approximate=False)
        y = dense(x.shape[-1], self.dtype, name="fc2")(dropout(y))
        return dropout(y)


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)), each branch with
    stochastic depth.

    The residual stream is kept in float32 (as under PyTorch autocast), the branches compute in
    `dtype`.
    """

    num_heads: int
    mlp_hidden: int
    layer_norm_epsilon: float
    dropout_rate: float
    drop_path_rate: float
    dtype: Dtype

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        norm = functools.partial(
            nn.LayerNorm, epsilon=self.layer_norm_epsilon, dtype=self.dtype, param_dtype=jnp.float32
        )
        branches = (
            (
                norm(name="norm1"),
                Attention(self.num_heads, self.dropout_rate, self.dtype, name="attn"),
            ),
            (norm(name="norm2"), Mlp(self.mlp_hidden, self.dropout_rate, self.dtype, name="mlp")),
        )
        for layer_norm, branch in branches:
            y = branch(layer_norm(x), train).astype(jnp.float32)
            if train and self.drop_path_rate > 0:
                y = drop_path(y, self.drop_path_rate, self.make_rng("dropout"))
            x = x + y
        return x


class ViT(nn.Module):
    """Patch-embedding conv, class token, learned position embeddings, pre-norm transformer
    blocks, then the class token's output through a final LayerNorm and a dense head.

    ViT-B/16 has 86,567,656 parameters at 1000 classes and 224 px, as timm's and Hugging Face's.
    The position embeddings take their shape from the image size at initialization (one per
    patch, plus the class token's): apply the model to images of that size
    (`resample_position_embeddings` adapts a checkpoint trained at another size). Dense kernels
    and position embeddings start from a truncated normal with std 0.02, the class token from
    N(0, 1e-6^2), the patch embedding from LeCun normal, biases from zero.

    Attributes:
      num_classes: width of the logits.
      patch_size: side of the square patches; the image sides must be multiples of it.
      width: token width.
      depth: number of transformer blocks.
      num_heads: attention heads; they divide the width.
      mlp_ratio: hidden width of the MLPs over the token width.
      layer_norm_epsilon: 1e-6 in timm and the original ViT; Hugging Face's configs say 1e-12.
      dropout_rate: dropout after the position embeddings, the attention projection and each
        MLP layer (the original ViT's `dropout_rate`).
      drop_path_rate: stochastic depth rate of the last block; it rises linearly from 0.
      dtype: compute dtype of the activations; parameters are float32, logits float32. The
        residual stream, the final LayerNorm and the head run in float32.
    """

    num_classes: int
    patch_size: int
    width: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    layer_norm_epsilon: float = 1e-6
    dropout_rate: float = 0.0
    drop_path_rate: float = 0.0
    dtype: Dtype = jnp.float32

    def __post_init__(self):
        check_positive(
            "ViT",
            num_classes=self.num_classes,
            patch_size=self.patch_size,
            width=self.width,
            depth=self.depth,
            num_heads=self.num_heads,
            mlp_ratio=self.mlp_ratio,
            layer_norm_epsilon=self.layer_norm_epsilon,
        )
        check_rate("ViT", dropout_rate=self.dropout_rate, drop_path_rate=self.drop_path_rate)
        if self.width % self.num_heads:
            raise ValueError(f"ViT: num_heads ({self.num_heads}) must divide width ({self.width}).")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if x.shape[1] % self.patch_size or x.shape[2] % self.patch_size:
            raise ValueError(
                f"ViT: image sides must be multiples of patch_size {self.patch_size}, got "
                f"{x.shape[1]}x{x.shape[2]} px."
            )
        p = self.patch_size
        x = nn.Conv(
            self.width,
            (p, p),
            strides=p,
            padding="VALID",
            dtype=self.dtype,
            param_dtype=jnp.float32,
            name="patch_embed",
        )(x.astype(self.dtype))
        batch, rows, cols, _ = x.shape
        x = x.reshape(batch, rows * cols, self.width).astype(jnp.float32)
        cls_init = nn.initializers.normal(stddev=1e-6)
        cls_token = self.param("cls_token", cls_init, (1, 1, self.width), jnp.float32)
        x = jnp.concatenate([jnp.broadcast_to(cls_token, (batch, 1, self.width)), x], axis=1)
        shape = (1, 1 + rows * cols, self.width)
        x = x + self.param("pos_embed", kernel_init, shape, jnp.float32)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        (rates,) = drop_path_rates([self.depth], self.drop_path_rate)
        for i, rate in enumerate(rates):
            x = EncoderBlock(
                self.num_heads,
                int(self.width * self.mlp_ratio),
                self.layer_norm_epsilon,
                self.dropout_rate,
                rate,
                self.dtype,
                name=f"block{i}",
            )(x, train)
        x = nn.LayerNorm(
            epsilon=self.layer_norm_epsilon,
            dtype=jnp.float32,
            param_dtype=jnp.float32,
            name="norm",
        )(x[:, 0])
        return classifier(self.num_classes, kernel_init=kernel_init)(x)
