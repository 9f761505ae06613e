"""ConvNet-D (Gidaris & Komodakis 2018), the network of the dataset-distillation literature.

`depth` blocks of 3x3 convolution (bias, padding 1) -> normalisation -> ReLU -> 2x2 pooling, then
one linear layer on the flattened features: ConvNet-3 ("ConvNetD3") at 32 px, ConvNet-4 at 64 px,
ConvNet-5 at 128 px, as DC/DSA/DM/MTT use them (VICO-UoE/DatasetCondensation, `utils.ConvNet`).
The weights start as PyTorch's defaults (uniform +-1/sqrt(fan_in), biases too), so the randomly
initialised networks that distribution matching embeds with are distributed as the papers'.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from bird_jax.models.common import Dtype, batch_norm, check_positive, patch_matmul_conv

NORMS = ("instance", "batch", "none")
POOLINGS = ("avg", "max", "none")

# PyTorch's default for Conv2d and Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch_default_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_default_bias_init(fan_in: int):
    """PyTorch's default bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for a layer of `fan_in` inputs."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def min_image_size(depth: int, pooling: str = "avg") -> int:
    """The smallest side ConvNet-`depth` takes: each pooling halves it and must leave >= 1 px."""
    return 2**depth if pooling != "none" else 1


class ConvNet(nn.Module):
    """ConvNet-`depth`: 320,010 parameters at depth 3, width 128, 32 px and 10 classes.

    Attributes:
      num_classes: width of the logits.
      width: channels of every convolution (the papers' net_width, 128).
      depth: number of conv blocks (net_depth; 3 at 32 px, 4 at 64 px, 5 at 128 px).
      norm: 'instance' (GroupNorm with one channel per group, affine: the papers' default),
        'batch' or 'none'.
      pooling: 'avg' (default), 'max' or 'none' (2x2, stride 2).
      dtype: compute dtype of the activations; parameters are float32, logits float32.
      patch_matmul: compute each convolution as one matmul of its 3x3 windows
        (common.patch_matmul_conv), same parameters and results: for training steps unrolled
        inside a loop body on CPU, where XLA's convolutions are slow (MTT's trajectories).

    `ConvNet(...).apply(variables, x, method="embed")` gives the flattened features the head
    reads (the embedding that distribution matching and the coresets compare).
    """

    num_classes: int
    width: int = 128
    depth: int = 3
    norm: str = "instance"
    pooling: str = "avg"
    dtype: Dtype = jnp.float32
    patch_matmul: bool = False

    def __post_init__(self):
        check_positive("ConvNet", num_classes=self.num_classes, width=self.width, depth=self.depth)
        for name, value, known in (("norm", self.norm, NORMS), ("pooling", self.pooling, POOLINGS)):
            if value not in known:
                raise ValueError(f"ConvNet: {name} must be one of {known}, got {value!r}.")
        super().__post_init__()

    def _block(self, x: jax.Array, index: int, train: bool) -> jax.Array:
        fan_in = 9 * x.shape[-1]
        x = nn.Conv(
            self.width,
            kernel_size=(3, 3),
            padding=1,
            kernel_init=torch_default_kernel_init,
            bias_init=torch_default_bias_init(fan_in),
            dtype=self.dtype,
            param_dtype=jnp.float32,
            conv_general_dilated=patch_matmul_conv if self.patch_matmul else None,
            name=f"block{index}_conv",
        )(x)
        if self.norm == "instance":
            x = nn.GroupNorm(
                num_groups=self.width,
                epsilon=1e-5,
                dtype=self.dtype,
                param_dtype=jnp.float32,
                name=f"block{index}_norm",
            )(x)
        elif self.norm == "batch":
            x = batch_norm(train, self.dtype, name=f"block{index}_norm")(x)
        x = nn.relu(x)
        if self.pooling == "avg":
            x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        elif self.pooling == "max":
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        return x

    def embed(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Images [N, H, W, C] -> float32 features [N, (H / 2^depth) * (W / 2^depth) * width]."""
        return self(x, train, features_only=True)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features_only: bool = False) -> jax.Array:
        smallest = min_image_size(self.depth, self.pooling)
        if min(x.shape[1:3]) < smallest:
            raise ValueError(
                f"ConvNet-{self.depth} needs images of at least {smallest} px, got "
                f"{x.shape[1]}x{x.shape[2]}: lower model.depth or raise data.image_size."
            )
        x = x.astype(self.dtype)
        for index in range(self.depth):
            x = self._block(x, index, train)
        features = x.reshape(x.shape[0], -1).astype(jnp.float32)
        if features_only:
            return features
        return nn.Dense(
            self.num_classes,
            dtype=jnp.float32,
            param_dtype=jnp.float32,
            kernel_init=torch_default_kernel_init,
            bias_init=torch_default_bias_init(features.shape[-1]),
            name="head",
        )(features)
