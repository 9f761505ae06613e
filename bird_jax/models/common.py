"""Pieces shared by the model families: initializers, argument checks, the classifier, and the
layers whose XLA:CPU lowering is slow as written by flax (depthwise and 1x1 convolutions,
BatchNorm): same parameters and results, hand-written backward passes (see BENCHMARKS.md,
"Lightweight CNN train step on CPU")."""

import contextlib
import contextvars
import functools
from collections.abc import Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

# He init on fan-out for convolutions and N(0, 0.01) for dense layers, as torchvision's VGG and
# MobileNetV2; biases start at zero.
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
dense_kernel_init = nn.initializers.normal(stddev=0.01)


def check_positive(model: str, **values: float) -> None:
    """Raises ValueError naming the first argument of `model` that is not > 0."""
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{model}: {name} must be > 0, got {value!r}.")


def check_rate(model: str, **rates: float) -> None:
    """Raises ValueError naming the first drop probability of `model` outside [0, 1)."""
    for name, rate in rates.items():
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{model}: {name} must be in [0, 1), got {rate!r}.")


def _sum_over_pixels(x: jax.Array) -> jax.Array:
    return jnp.sum(x, axis=tuple(range(x.ndim - 1)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _batch_norm_train(x, scale, bias, epsilon, dtype):
    """(normalised x, batch mean, batch variance), as flax's BatchNorm computes them in training.

    Statistics and normalisation in float32 (variance E[x^2] - E[x]^2, clipped at 0), output in
    `dtype`. The backward pass is written out: two per-channel sums of the incoming gradient,
    then one elementwise pass. Autodiff of the same formula also writes x - mean out in the
    forward pass and makes more passes over the activations backwards.
    """
    return _batch_norm_train_forward(x, scale, bias, epsilon, dtype)[0]


def _batch_norm_train_forward(x, scale, bias, epsilon, dtype):
    xf = x.astype(jnp.float32)
    count = xf.size // xf.shape[-1]
    mean = _sum_over_pixels(xf) / count
    var = jnp.maximum(0.0, _sum_over_pixels(xf * xf) / count - mean * mean)
    y = (xf - mean) * (jax.lax.rsqrt(var + epsilon) * scale) + bias
    return (y.astype(dtype), mean, var), (x, scale, mean, var)


def _batch_norm_train_backward(epsilon, dtype, residuals, grads):
    del dtype
    x, scale, mean, var = residuals
    grad, mean_grad, var_grad = (g.astype(jnp.float32) for g in grads)
    xf = x.astype(jnp.float32)
    count = xf.size // xf.shape[-1]
    inv_std = jax.lax.rsqrt(var + epsilon)
    centered = xf - mean
    bias_grad = _sum_over_pixels(grad)
    # sum(grad * (x - mean)) without writing x - mean out: both sums read grad and x only.
    scale_grad = (_sum_over_pixels(grad * xf) - mean * bias_grad) * inv_std
    # Through x, mean and var into (x - mean) * inv_std * scale + bias; then the gradients of the
    # returned mean and variance themselves (zero: only the running statistics use them).
    x_grad = (scale * inv_std) * (grad - (bias_grad + centered * inv_std * scale_grad) / count)
    x_grad = x_grad + (mean_grad + centered * (2 * var_grad)) / count
    return x_grad.astype(x.dtype), scale_grad, bias_grad


_batch_norm_train.defvjp(_batch_norm_train_forward, _batch_norm_train_backward)


class BatchNorm(nn.BatchNorm):
    """flax's `nn.BatchNorm` over the last axis (same variables, statistics and outputs), with a
    hand-written backward pass in training (`_batch_norm_train`).

    Only the defaults of the features axis, scale, bias, fast variance and float32 reductions,
    without axis_name or mask: what `batch_norm` builds.
    """

    @nn.compact
    def __call__(self, x, use_running_average=None, *, mask=None):
        defaults = (
            self.axis in (-1, x.ndim - 1)
            and self.axis_name is None
            and mask is None
            and self.use_scale
            and self.use_bias
            and self.use_fast_variance
            and self.force_float32_reductions
        )
        if not defaults:
            raise ValueError("bird_jax BatchNorm supports only nn.BatchNorm's default options.")
        if use_running_average is None:  # a call argument wins: `frozen_statistics`
            use_running_average = self.use_running_average
        features = (x.shape[-1],)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, features, jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, features, jnp.float32)
        scale = self.param("scale", self.scale_init, features, self.param_dtype)
        bias = self.param("bias", self.bias_init, features, self.param_dtype)
        dtype = nn.dtypes.canonicalize_dtype(x, scale, bias, dtype=self.dtype)
        scale, bias = scale.astype(jnp.float32), bias.astype(jnp.float32)
        if use_running_average:  # flax's _normalize, in float32
            mul = jax.lax.rsqrt(ra_var.value + self.epsilon) * scale
            return ((x - ra_mean.value) * mul + bias).astype(dtype)
        y, mean, var = _batch_norm_train(x, scale, bias, self.epsilon, dtype)
        if not self.is_initializing():
            ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
            ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        return y


def frozen_statistics(next_fun, args, kwargs, context):
    """flax method interceptor (`nn.intercept_methods`): every BatchNorm normalises with its
    running statistics and leaves them unchanged, also in training (frozen BatchNorm)."""
    if isinstance(context.module, BatchNorm) and context.method_name == "__call__":
        kwargs = {**kwargs, "use_running_average": True}
    return next_fun(*args, **kwargs)


def batch_norm(
    train: bool,
    dtype: Dtype,
    name: str,
    scale_init=nn.initializers.ones,
    epsilon: float = 1e-5,
) -> nn.BatchNorm:
    """BatchNorm (momentum 0.9) keeping running statistics in 'batch_stats'."""
    return BatchNorm(
        use_running_average=not train,
        momentum=0.9,
        epsilon=epsilon,
        dtype=dtype,
        param_dtype=jnp.float32,
        scale_init=scale_init,
        name=name,
    )


def classifier(num_classes: int, kernel_init=dense_kernel_init, name: str = "head") -> nn.Dense:
    """Final Dense layer; it runs in float32 so logits keep full precision under bf16 compute."""
    return nn.Dense(
        num_classes,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        kernel_init=kernel_init,
        name=name,
    )


def drop_path(x: jax.Array, rate: float, rng: jax.Array) -> jax.Array:
    """Stochastic depth: zeroes whole samples with probability `rate`, rescales the others."""
    keep = 1.0 - rate
    mask = jax.random.bernoulli(rng, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / keep, jnp.zeros_like(x))


def global_average_pool(x: jax.Array) -> jax.Array:
    """[N, H, W, C] -> float32 [N, C]; the reduction is done in float32."""
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


def _window(x: jax.Array, i: int, j: int, out_h: int, out_w: int, stride: int) -> jax.Array:
    """x[:, i::stride, j::stride, :] cut to [N, out_h, out_w, C]."""
    limit = (x.shape[0], i + (out_h - 1) * stride + 1, j + (out_w - 1) * stride + 1, x.shape[3])
    return jax.lax.slice(x, (0, i, j, 0), limit, (1, stride, stride, 1))


def _shift_and_add(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """Depthwise conv of pre-padded x [N, H, W, C] by kernel [k, k, C]: k*k scaled windows."""
    k = kernel.shape[0]
    out_h = (x.shape[1] - k) // stride + 1
    out_w = (x.shape[2] - k) // stride + 1
    out = None
    for i in range(k):
        for j in range(k):
            term = _window(x, i, j, out_h, out_w, stride) * kernel[i, j]
            out = term if out is None else out + term
    return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _depthwise_shift_and_add(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """`_shift_and_add` with a hand-written backward pass (the same math as autodiff's).

    Autodiff keeps each of the k*k windows as a residual for the kernel's gradient; XLA:CPU then
    writes every window out in the forward pass (recomputing the producer of x into each) and
    reads them back in the backward pass. Here the only residual is x itself, and the kernel's
    gradient is summed in a form XLA:CPU computes in one pass (`_sums_over_width`).
    """
    return _shift_and_add(x, kernel, stride)


def _depthwise_forward(x, kernel, stride):
    return _shift_and_add(x, kernel, stride), (x, kernel)


def _sums_over_width(terms: list[jax.Array]) -> list[jax.Array]:
    """Per-channel sums of [N, H, W, C] terms: one variadic reduction over W, then over N, H.

    XLA:CPU computes the first reduction in one loop over the windows, reading them in place;
    separate `jnp.sum`s go to a reduction library that needs each window written out first
    (5-10x slower at 112 px). The second reduction is over a W-times smaller array.
    """
    terms = [t.astype(jnp.float32) for t in terms]  # bfloat16: accumulate in float32
    zeros = [jnp.zeros((), jnp.float32)] * len(terms)
    add = lambda a, b: [u + v for u, v in zip(a, b, strict=True)]
    rows = jax.lax.reduce(terms, zeros, add, (2,))
    return [jnp.sum(row, axis=(0, 1)) for row in rows]


def _depthwise_backward(stride, residuals, grad):
    x, kernel = residuals
    k = kernel.shape[0]
    _, out_h, out_w, _ = grad.shape
    # Kernel gradient: sum over pixels of each window times grad; all k*k sums in one loop for
    # a 3x3 kernel, one loop per kernel row for larger ones (ConvNeXt's 7x7).
    group = k * k if k <= 3 else k
    windows = [(i, j) for i in range(k) for j in range(k)]
    sums = []
    for start in range(0, k * k, group):
        taps = windows[start : start + group]
        sums += _sums_over_width([_window(x, i, j, out_h, out_w, stride) * grad for i, j in taps])
    kernel_grad = jnp.stack(sums).reshape(k, k, -1).astype(kernel.dtype)
    # Input gradient: each window's transpose scatters grad * kernel[i, j] back into x's shape.
    x_grad = None
    for i, j in windows:
        high_h = x.shape[1] - i - (out_h - 1) * stride - 1
        high_w = x.shape[2] - j - (out_w - 1) * stride - 1
        padding = ((0, 0, 0), (i, high_h, stride - 1), (j, high_w, stride - 1), (0, 0, 0))
        term = jax.lax.pad(grad * kernel[i, j], jnp.zeros((), grad.dtype), padding)
        x_grad = term if x_grad is None else x_grad + term
    return x_grad, kernel_grad


_depthwise_shift_and_add.defvjp(_depthwise_forward, _depthwise_backward)

_GROUPED_DEPTHWISE = contextvars.ContextVar("grouped_depthwise", default=False)


@contextlib.contextmanager
def grouped_depthwise() -> Iterator[None]:
    """Functions traced inside trace DepthwiseConv as XLA's grouped convolution on every backend.

    For exported graphs (bird_jax.export): converters turn the grouped convolution into one
    depthwise-convolution op, the k*k shifted slices of the CPU path into k*k ops. It acts when
    a function is traced: jit a new function inside, not one already traced outside.
    """
    token = _GROUPED_DEPTHWISE.set(True)
    try:
        yield
    finally:
        _GROUPED_DEPTHWISE.reset(token)


class DepthwiseConv(nn.Module):
    """Depthwise k x k convolution with the parameters of `nn.Conv(feature_group_count=C)`.

    XLA:CPU lowers grouped convolutions and their gradients very slowly, so on CPU this computes
    the convolution as k*k shifted, scaled slices of the input, with a hand-written backward
    pass (`_depthwise_shift_and_add`). Measured on 2 cores (batch 32, 64 px, train step):
    ConvNeXt-T 3.6 s instead of 28 s, the lightweight CNN 2.6x faster, at similar compile times
    (the hand-written backward pass came later: BENCHMARKS.md). On GPU/TPU, and on CPU inside
    `grouped_depthwise()`, it is XLA's grouped convolution. Both give the same result and the
    checkpoints are interchangeable.
    """

    kernel_size: int
    strides: int = 1
    padding: int = 0  # symmetric zero padding on each spatial side
    use_bias: bool = True
    kernel_init: Any = nn.initializers.lecun_normal()
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, channels = self.kernel_size, x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (k, k, 1, channels), self.param_dtype)
        bias = (
            self.param("bias", nn.initializers.zeros, (channels,), self.param_dtype)
            if self.use_bias
            else None
        )
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        pad = ((0, 0), (self.padding, self.padding), (self.padding, self.padding), (0, 0))
        if jax.default_backend() == "cpu" and not _GROUPED_DEPTHWISE.get():
            y = _depthwise_shift_and_add(jnp.pad(x, pad), kernel[:, :, 0, :], self.strides)
        else:
            y = jax.lax.conv_general_dilated(
                x,
                kernel,
                window_strides=(self.strides, self.strides),
                padding=pad[1:3],
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                feature_group_count=channels,
            )
        return y + bias if bias is not None else y


def _matmul_last_axis(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """[..., in] x [in, out] -> [..., out]."""
    return jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))


@jax.custom_vjp
def _pointwise(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`_matmul_last_axis` whose kernel gradient is one 2-D matmul over all pixels.

    Autodiff contracts the 4-D activations over (N, H, W); XLA:CPU then lays one operand out
    transposed and writes a transposed copy of it (the largest single cost of the step at
    224 px). As [N*H*W, in]^T [N*H*W, out] no copy is made.
    """
    return _matmul_last_axis(x, kernel)


def _pointwise_forward(x, kernel):
    return _matmul_last_axis(x, kernel), (x, kernel)


def _pointwise_backward(residuals, grad):
    x, kernel = residuals
    x_grad = jax.lax.dot_general(grad, kernel, (((grad.ndim - 1,), (1,)), ((), ())))
    flat_x, flat_grad = x.reshape(-1, x.shape[-1]), grad.reshape(-1, grad.shape[-1])
    kernel_grad = jax.lax.dot_general(flat_x, flat_grad, (((0,), (0,)), ((), ())))
    return x_grad, kernel_grad.astype(kernel.dtype)


_pointwise.defvjp(_pointwise_forward, _pointwise_backward)


class PointwiseConv(nn.Module):
    """1x1 convolution with the parameters of `nn.Conv(features, (1, 1))`, computed as a matmul.

    The kernel keeps nn.Conv's [1, 1, in, out] shape, so checkpoints are interchangeable. As a
    convolution, XLA:CPU computes the kernel gradient as a convolution of transposed copies of
    the activations; here it is one matmul over all pixels (`_pointwise`), on every backend.
    """

    features: int
    use_bias: bool = True
    kernel_init: Any = nn.initializers.lecun_normal()
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (1, 1, x.shape[-1], self.features)
        kernel = self.param("kernel", self.kernel_init, shape, self.param_dtype)
        bias = (
            self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
            if self.use_bias
            else None
        )
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = _pointwise(x, kernel[0, 0])
        return y + bias if bias is not None else y


def patch_matmul_conv(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    precision: Any = None,
) -> jax.Array:
    """`lax.conv_general_dilated` for NHWC x HWIO as one matmul of the k*k shifted windows
    (im2col); for `nn.Conv(..., conv_general_dilated=patch_matmul_conv)`.

    XLA:CPU runs convolutions inside a loop body (lax.scan) or a lax.cond branch far slower
    than outside, their kernel gradients 50-100x (jax-ml/jax#12868); the matmul and slices
    that replace them here, and all their derivatives, run at full speed there. Costs k*k
    times the input's memory.
    """
    if lhs_dilation and set(lhs_dilation) != {1} or rhs_dilation and set(rhs_dilation) != {1}:
        raise ValueError("patch_matmul_conv: dilated convolutions are not supported.")
    if feature_group_count != 1:
        raise ValueError("patch_matmul_conv: grouped convolutions are not supported.")
    expected = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
    if dimension_numbers is not None and dimension_numbers != expected:
        raise ValueError("patch_matmul_conv: only NHWC inputs with HWIO kernels are supported.")
    (stride_h, stride_w), (k_h, k_w) = window_strides, rhs.shape[:2]
    if stride_h != stride_w:
        raise ValueError("patch_matmul_conv: strides must be equal along height and width.")
    if isinstance(padding, str):
        padding = jax.lax.padtype_to_pads(lhs.shape[1:3], (k_h, k_w), window_strides, padding)
    x = jnp.pad(lhs, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    out_h = (x.shape[1] - k_h) // stride_h + 1
    out_w = (x.shape[2] - k_w) // stride_w + 1
    windows = [_window(x, i, j, out_h, out_w, stride_h) for i in range(k_h) for j in range(k_w)]
    patches = jnp.concatenate(windows, axis=-1).reshape(-1, k_h * k_w * x.shape[3])
    y = jnp.dot(patches, rhs.reshape(-1, rhs.shape[3]), precision=precision)
    return y.reshape(x.shape[0], out_h, out_w, rhs.shape[3])


def conv(features: int, kernel_size: int, dtype: Dtype, name: str, **kwargs) -> nn.Module:
    """Bias-free square convolution (a BatchNorm follows it); 1x1 ones as a matmul."""
    if kernel_size == 1 and not kwargs:
        return PointwiseConv(
            features,
            use_bias=False,
            kernel_init=conv_kernel_init,
            dtype=dtype,
            param_dtype=jnp.float32,
            name=name,
        )
    return nn.Conv(
        features,
        (kernel_size, kernel_size),
        use_bias=False,
        kernel_init=conv_kernel_init,
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
        **kwargs,
    )
