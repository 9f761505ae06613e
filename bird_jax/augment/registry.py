"""Augmentation pipelines from strings, big_vision style: `name(args, key=value, p=prob)|...`.

    random_resized_crop(scale=(0.35, 1))|flip_lr|median_blur(5, p=0.3)|brightness(0.2, p=0.5)|
    random_erasing(mode="pixel", p=0.25)|mixup(0.8, cutmix_alpha=1.0)

Every op is a plain function, registered where it is defined with `@register(kind)` under its
name, of one of three kinds:
  host   `op(image uint8 [H, W, 3], rng: np.random.Generator, **params)`, run per image in the
         Grain workers (decoding, crops, OpenCV/PIL filters);
  device `op(image float32 [H, W, 3] in [0, 1], key, **params)`, run per image on the device,
         vmapped inside the train step;
  batch  `op(images, targets, key, global_index, global_size, *, axis_name, **params)`, run once
         on the device batch (Mixup/CutMix).
A pipeline lists host ops, then device ops, then at most one batch op. Positional arguments fill
an op's parameters in order; `p` applies the op with that probability (per image; default 1,
or the op's registered default, 0.5 for flip_lr). Parameters named `size`, `mean` and `std`
are filled from data.image_size/mean/std unless given (so no op may use these names for
anything else). Every op is tried once on a small dummy input when the pipeline is parsed, so
a bad parameter fails at start.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

HOST, DEVICE, BATCH = "host", "device", "batch"
_INTERNAL_PARAMS = ("axis_name",)
_DUMMY_HOST_SHAPE = (30, 40, 3)
_DUMMY_DEVICE_SHAPE = (8, 8, 3)
_KIND_ORDER = {HOST: 0, DEVICE: 1, BATCH: 2}
# The modules whose ops register themselves when imported (with the `register` decorator).
_OP_MODULES = ("crops", "host_ops", "randaugment", "device_ops", "mixup")
_REGISTRY: dict[str, tuple[str, Callable]] = {}
_DEFAULT_P: dict[str, float] = {}  # ops applied with another probability than 1 by default


def register(kind: str, *, name: str | None = None, p: float = 1.0) -> Callable:
    """Decorator registering an op of `kind` under `name` (default: the function's name), to be
    applied with probability `p` unless a pipeline gives one; returns the function itself, so
    partials of it pickle by reference for the Grain workers."""
    if kind not in _KIND_ORDER:
        raise ValueError(f"Unknown op kind {kind!r}; use one of {list(_KIND_ORDER)}.")

    def decorate(fn: Callable) -> Callable:
        op_name = name or fn.__name__
        where = lambda f: (f.__module__, f.__qualname__)  # noqa: E731
        known = _REGISTRY.get(op_name)
        if known and where(known[1]) != where(fn):  # a reloaded module may register again
            raise ValueError(f"Augmentation op {op_name!r} is already registered by {known[1]}.")
        _REGISTRY[op_name] = (kind, fn)
        if p != 1:
            _DEFAULT_P[op_name] = p
        return fn

    return decorate


def _listing_order(item: tuple[str, tuple[str, Callable]]) -> tuple[int, int, int]:
    """Kind, then module (as in _OP_MODULES), then line: an order independent of import order."""
    kind, fn = item[1]
    module = fn.__module__.rpartition(".")[2]
    rank = _OP_MODULES.index(module) if module in _OP_MODULES else len(_OP_MODULES)
    return _KIND_ORDER[kind], rank, fn.__code__.co_firstlineno


def registered_ops() -> dict[str, tuple[str, Callable]]:
    """Op name -> (kind, function): host ops, then device ops, then batch ops."""
    for module in _OP_MODULES:
        importlib.import_module(f"bird_jax.augment.{module}")
    return dict(sorted(_REGISTRY.items(), key=_listing_order))


@dataclasses.dataclass(frozen=True)
class Op:
    """One configured op: its function with bound parameters and its probability."""

    name: str
    kind: str
    fn: Callable  # functools.partial(op, **params): picklable for Grain workers
    p: float = 1.0
    injected: tuple[str, ...] = ()  # params filled from the data config, left out of str()

    def __str__(self) -> str:
        params = [
            f"{key}={value!r}"
            for key, value in self.fn.keywords.items()
            if key not in self.injected
        ]
        if self.p < 1:
            params.append(f"p={self.p}")
        return f"{self.name}({', '.join(params)})"


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """A parsed pipeline: host ops, then per-image device ops, then an optional batch op."""

    host: tuple[Op, ...]
    device: tuple[Op, ...]
    batch: Op | None

    @property
    def ops(self) -> tuple[Op, ...]:
        """All ops in pipeline order."""
        return (*self.host, *self.device, *([self.batch] if self.batch else []))

    def __str__(self) -> str:
        return "|".join(str(op) for op in self.ops)


def _split_ops(spec: str | Sequence[str]) -> list[str]:
    parts = spec.split("|") if isinstance(spec, str) else list(spec)
    return [part.strip() for part in parts if part.strip()]


def _parse_call(text: str) -> tuple[str, list[Any], dict[str, Any]]:
    """'name(1, k=(2, 3))' -> ('name', [1], {'k': (2, 3)}); values must be Python literals."""
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError as error:
        raise ValueError(f"Cannot parse augmentation op {text!r}: {error.msg}.") from error
    if isinstance(node, ast.Name):
        return node.id, [], {}
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        raise ValueError(f"Augmentation op {text!r} must look like name or name(args).")
    try:
        args = [ast.literal_eval(arg) for arg in node.args]
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
    except ValueError as error:
        raise ValueError(
            f"Arguments of augmentation op {text!r} must be literals (numbers, strings, tuples)."
        ) from error
    return node.func.id, args, kwargs


def _user_params(fn: Callable) -> list[str]:
    """The keyword-only parameters a pipeline string may set, in declaration order."""
    return [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.kind == inspect.Parameter.KEYWORD_ONLY and p.name not in _INTERNAL_PARAMS
    ]


def _bind(name: str, fn: Callable, args: list, kwargs: dict, injected: dict) -> dict:
    params = _user_params(fn)
    if len(args) > len(params):
        raise ValueError(f"Op {name} takes at most {len(params)} arguments {params}, got {args}.")
    bound = dict(zip(params, args, strict=False))
    for key, value in kwargs.items():
        if key not in params:
            raise ValueError(f"Op {name} has no parameter {key!r}; it takes {params}.")
        if key in bound:
            raise ValueError(f"Op {name} got parameter {key!r} twice.")
        bound[key] = value
    bound.update({k: v for k, v in injected.items() if k in params and k not in bound})
    missing = [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.name in params and p.default is inspect.Parameter.empty and p.name not in bound
    ]
    if missing:
        raise ValueError(f"Op {name} needs parameter(s) {missing}.")
    return bound


def parse_op(text: str, *, image_size: int, mean: Sequence[float], std: Sequence[float]) -> Op:
    """One op from its text, e.g. 'median_blur(5, p=0.3)'; ValueError says what is wrong."""
    name, args, kwargs = _parse_call(text)
    ops = registered_ops()
    if name not in ops:
        close = difflib.get_close_matches(name, ops, n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(f"Unknown augmentation op {name!r}.{hint} Known: {sorted(ops)}.")
    kind, fn = ops[name]
    p = kwargs.pop("p", _DEFAULT_P.get(name, 1.0))
    if not (isinstance(p, int | float) and 0 < p <= 1):
        raise ValueError(f"Op {name}: probability p must be in (0, 1], got {p!r}.")
    if kind == BATCH and p != 1:
        raise ValueError(f"Op {name} is a batch op: use its own `prob` parameter, not p.")
    injected = {"size": image_size, "mean": tuple(mean), "std": tuple(std)}
    bound = _bind(name, fn, args, kwargs, injected)
    given = {*kwargs, *_user_params(fn)[: len(args)]}
    filled = tuple(key for key in injected if key in bound and key not in given)
    op = Op(name, kind, functools.partial(fn, **bound), float(p), filled)
    _check_op(op)
    return op


def _check_op(op: Op) -> None:
    """Runs `op` once on a small dummy input: bad parameters raise here, at parse time."""
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    image = jax.ShapeDtypeStruct(_DUMMY_DEVICE_SHAPE, jnp.float32)
    if op.kind == HOST:
        rng = np.random.default_rng(0)
        out = op.fn(rng.integers(0, 256, _DUMMY_HOST_SHAPE, dtype=np.uint8), rng)
        if out.dtype != np.uint8 or out.ndim != 3 or out.shape[-1] != 3:
            raise ValueError(f"Host op {op} returned {out.dtype} {out.shape}, not uint8 HxWx3.")
        return
    if op.kind == DEVICE:
        out, expected = jax.eval_shape(op.fn, image, key), image
    else:
        images = jax.ShapeDtypeStruct((4, *_DUMMY_DEVICE_SHAPE), jnp.float32)
        targets = jax.ShapeDtypeStruct((4, 3), jnp.float32)
        index = jax.ShapeDtypeStruct((4,), jnp.int32)
        mix = functools.partial(op.fn, global_size=4, axis_name=None)
        out, expected = jax.eval_shape(mix, images, targets, key, index), (images, targets)
    shapes = lambda tree: jax.tree.map(lambda s: (s.shape, s.dtype), tree)
    if shapes(out) != shapes(expected):
        raise ValueError(f"Device op {op} changes the shape or dtype of its input: {out}.")


def check_host_size(ops: Sequence[Op], image_size: int) -> None:
    """The host ops, run in order on a dummy image, must end at image_size x image_size."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, _DUMMY_HOST_SHAPE, dtype=np.uint8)
    for op in ops:
        image = op.fn(image, rng)
    if image.shape[:2] != (image_size, image_size):
        raise ValueError(
            f"The host ops must produce {image_size}x{image_size} images (data.image_size) but "
            f"give {image.shape[0]}x{image.shape[1]}: start the pipeline with "
            f"random_resized_crop, resize or center_crop."
        )


def parse_ops(
    spec: str | Sequence[str],
    *,
    image_size: int,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
) -> list[Op]:
    """Parses and checks each op of a string (or list) on its own, in any order (for galleries)."""
    return [parse_op(text, image_size=image_size, mean=mean, std=std) for text in _split_ops(spec)]


def parse_pipeline(
    spec: str | Sequence[str],
    *,
    image_size: int,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
) -> Pipeline:
    """Parses and checks a pipeline string (or a list of op strings)."""
    ops = parse_ops(spec, image_size=image_size, mean=mean, std=std)
    for before, after in zip(ops, ops[1:], strict=False):
        if _KIND_ORDER[after.kind] < _KIND_ORDER[before.kind] or after.kind == before.kind == BATCH:
            raise ValueError(
                f"Op {after.name} ({after.kind}) cannot follow {before.name} ({before.kind}): a "
                f"pipeline lists host ops, then device ops, then at most one batch op."
            )
    pipeline = Pipeline(
        host=tuple(op for op in ops if op.kind == HOST),
        device=tuple(op for op in ops if op.kind == DEVICE),
        batch=next((op for op in ops if op.kind == BATCH), None),
    )
    check_host_size(pipeline.host, image_size)
    return pipeline


def train_pipeline(data_config) -> Pipeline:
    """The parsed data.train_pipeline of a config."""
    return parse_pipeline(
        data_config.train_pipeline,
        image_size=data_config.image_size,
        mean=data_config.mean,
        std=data_config.std,
    )
