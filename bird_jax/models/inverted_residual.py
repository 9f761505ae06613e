"""The inverted-residual (MBConv) block of MobileNetV2, EfficientNet and the lightweight CNN, and
the network around it that MobileNetV2 and EfficientNet share."""

import dataclasses
import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from bird_jax.models.common import (
    DepthwiseConv,
    Dtype,
    batch_norm,
    classifier,
    conv,
    conv_kernel_init,
    dense_kernel_init,
    drop_path,
    global_average_pool,
)

ACTIVATIONS = {"relu6": jax.nn.relu6, "hard_swish": jax.nn.hard_swish, "silu": jax.nn.silu}


def scale_width(width: int, multiplier: float, divisor: int = 8) -> int:
    """`width * multiplier` rounded to a multiple of `divisor`, never more than 10% below it
    (torchvision's `_make_divisible`, timm's `round_channels`)."""
    scaled = max(divisor, int(width * multiplier + divisor / 2) // divisor * divisor)
    return scaled + divisor if scaled < 0.9 * width * multiplier else scaled


def conv_padding(
    shape: Sequence[int], kernel_size: int, strides: int, same: bool
) -> list[tuple[int, int]]:
    """(low, high) zero padding of each spatial axis of an NHWC `shape`: TensorFlow's "SAME"
    (one more pixel high than low where the total is odd, e.g. (0, 1) for a 3x3 stride-2 conv on
    an even size), or (k - 1) // 2 on both sides."""
    if same:
        return jax.lax.padtype_to_pads(shape[1:3], (kernel_size,) * 2, (strides,) * 2, "SAME")
    return [((kernel_size - 1) // 2,) * 2] * 2


class SqueezeExcite(nn.Module):
    """Scales each channel by a sigmoid gate computed from the globally pooled features."""

    squeeze: int
    activation: str
    dtype: Dtype

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dense = functools.partial(
            nn.Dense, kernel_init=conv_kernel_init, dtype=self.dtype, param_dtype=jnp.float32
        )
        s = dense(self.squeeze, name="reduce")(global_average_pool(x))
        gate = jax.nn.sigmoid(dense(x.shape[-1], name="expand")(ACTIVATIONS[self.activation](s)))
        return x * gate[:, None, None, :]


class InvertedResidual(nn.Module):
    """1x1 expand -> k x k depthwise -> squeeze-excite -> linear 1x1 project, each convolution
    followed by BatchNorm; a skip (with stochastic depth) when stride and width are kept.

    With expansion 1 there is no expand convolution (a depthwise-separable block); with
    se_ratio 0 no squeeze-excite, whose width is otherwise int(input width * se_ratio).
    same_padding gives the depthwise convolution TensorFlow's "SAME" padding (`conv_padding`).
    """

    features: int
    expansion: int
    strides: int
    activation: str
    dtype: Dtype
    kernel_size: int = 3
    se_ratio: float = 0.0
    drop_path_rate: float = 0.0
    same_padding: bool = False
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        norm = functools.partial(batch_norm, train, self.dtype, epsilon=self.bn_epsilon)
        y = x
        if self.expansion != 1:
            y = conv(x.shape[-1] * self.expansion, 1, self.dtype, name="expand")(y)
            y = act(norm(name="expand_bn")(y))
        pads = conv_padding(y.shape, self.kernel_size, self.strides, self.same_padding)
        symmetric = len({p for pair in pads for p in pair}) == 1
        if not symmetric:  # DepthwiseConv pads symmetrically only
            y = jnp.pad(y, ((0, 0), *pads, (0, 0)))
        y = DepthwiseConv(
            self.kernel_size,
            strides=self.strides,
            padding=pads[0][0] if symmetric else 0,
            use_bias=False,
            kernel_init=conv_kernel_init,
            dtype=self.dtype,
            name="depthwise",
        )(y)
        y = act(norm(name="depthwise_bn")(y))
        if self.se_ratio > 0:
            squeeze = max(1, int(x.shape[-1] * self.se_ratio))
            y = SqueezeExcite(squeeze, self.activation, self.dtype, name="se")(y)
        y = conv(self.features, 1, self.dtype, name="project")(y)
        y = norm(name="project_bn")(y)
        if self.strides != 1 or x.shape[-1] != self.features:
            return y
        if train and self.drop_path_rate > 0:
            y = drop_path(y, self.drop_path_rate, self.make_rng("dropout"))
        return x + y


@dataclasses.dataclass(frozen=True)
class Network:
    """A MobileNetV2/EfficientNet-shaped network: what `classify` builds.

    Attributes:
      stem_width: output width of the 3x3 stride-2 stem convolution.
      blocks: keyword arguments of each `InvertedResidual` besides activation, dtype, padding
        and BatchNorm epsilon, in forward order.
      final_width: output width of the 1x1 convolution before the pool.
      activation: a key of ACTIVATIONS.
      same_padding: TensorFlow's "SAME" padding in the stem and depthwise convolutions.
      bn_epsilon: epsilon of every BatchNorm.
      head_init: initializer of the head's kernel.
    """

    stem_width: int
    blocks: tuple[dict, ...]
    final_width: int
    activation: str
    same_padding: bool = False
    bn_epsilon: float = 1e-5
    head_init: Callable = dense_kernel_init


def classify(
    x: jax.Array,
    network: Network,
    *,
    num_classes: int,
    dropout_rate: float,
    train: bool,
    dtype: Dtype,
) -> jax.Array:
    """Logits of `network` for images x; call it inside a compact method, whose module gets the
    layers: stem_conv, stem_bn, block0, block1, ..., final_conv, final_bn, head."""
    act = ACTIVATIONS[network.activation]
    norm = functools.partial(batch_norm, train, dtype, epsilon=network.bn_epsilon)
    x = x.astype(dtype)
    pads = conv_padding(x.shape, 3, 2, network.same_padding)
    x = conv(network.stem_width, 3, dtype, name="stem_conv", strides=2, padding=pads)(x)
    x = act(norm(name="stem_bn")(x))
    for n, block in enumerate(network.blocks):
        x = InvertedResidual(
            **block,
            activation=network.activation,
            dtype=dtype,
            same_padding=network.same_padding,
            bn_epsilon=network.bn_epsilon,
            name=f"block{n}",
        )(x, train)
    x = conv(network.final_width, 1, dtype, name="final_conv")(x)
    x = act(norm(name="final_bn")(x))
    x = nn.Dropout(dropout_rate, deterministic=not train)(global_average_pool(x))
    return classifier(num_classes, kernel_init=network.head_init)(x)
