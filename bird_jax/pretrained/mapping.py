"""Maps a source state dict onto a bird_jax model's variables, checking everything first.

Every source tensor must land on exactly one model variable and every variable must be covered,
with matching shapes after the layout conversion; the only exception is the classifier ("head"),
which is kept freshly initialised when the class count differs (or the checkpoint has none).
Anything else is a `MappingError` that lists the names, raised before any compute.
"""

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from bird_jax.pretrained import formats

HEAD = "params/head/"
_SHOWN = 6  # names listed per kind of problem in an error


class MappingError(ValueError):
    """Weights that do not fit the model; the message lists what does not map."""


@dataclasses.dataclass(frozen=True)
class Conversion:
    """Converted arrays by bird_jax path ("params/stem_conv/kernel"), and what was left out."""

    format: str
    arrays: dict[str, np.ndarray]
    reinitialised: tuple[str, ...]

    def apply_to(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        """`variables` (e.g. a fresh model.init) with every converted array put in its place."""
        flat = flatten(variables)
        missing = sorted(set(self.arrays) - set(flat))
        if missing:
            raise MappingError(f"The variables have no {', '.join(missing[:_SHOWN])}.")
        flat.update(self.arrays)
        return unflatten(flat)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"params": {"head": {"kernel": x}}} -> {"params/head/kernel": x}."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of `flatten`."""
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        *parents, leaf = path.split("/")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return tree


def to_layout(value: np.ndarray, leaf: str, shape: tuple[int, ...]) -> np.ndarray:
    """A PyTorch tensor in flax's layout for a `leaf` of `shape`: OIHW -> HWIO convolution
    kernels (depthwise (C, 1, k, k) -> (k, k, 1, C)), (out, in) -> (in, out) Linear weights,
    (out, in, 1, 1) 1x1 convolutions -> (in, out) Dense kernels. Other tensors are unchanged."""
    if leaf != "kernel":
        return value
    if value.ndim == 4 and len(shape) == 4:
        return value.transpose(2, 3, 1, 0)
    if value.ndim == 2 and len(shape) == 2:
        return value.T
    if value.ndim == 4 and len(shape) == 2 and value.shape[2:] == (1, 1):
        return value[:, :, 0, 0].T
    return value


def convert_state(
    state: Mapping[str, np.ndarray],
    model_name: str,
    template: Mapping[str, Any],
    format_name: str | None = None,
) -> Conversion:
    """Maps `state` onto `template` (the model's variables or their shapes: `jax.eval_shape` of
    model.init), detecting the format unless `format_name` names it. Raises MappingError."""
    state = formats.strip_prefixes(dict(state))
    fmt = formats.get_format(format_name) if format_name else formats.detect(state, model_name)
    if fmt.prepare is not None:
        state = fmt.prepare(state)
    targets = {
        path: tuple(leaf.shape)
        for path, leaf in flatten(template).items()
        if path.startswith(("params/", "batch_stats/"))
    }
    arrays: dict[str, np.ndarray] = {}
    unused, mismatched, head_mismatch = [], [], []
    seen: set[str] = set()  # paths some source tensor maps to, fitting or not
    for key, value in state.items():
        if fmt.ignored(key):
            continue
        path = fmt.target(key)
        if path is None or path not in targets:
            unused.append(key if path is None else f"{key} (-> {path}, which the model lacks)")
            continue
        if path in seen:
            raise MappingError(f"{fmt.name}: two source tensors map to {path}; fix its rules.")
        seen.add(path)
        shape = targets[path]
        leaf = path.rsplit("/", 1)[-1]
        value = np.asarray(value)
        converted = to_layout(value, leaf, shape) if fmt.torch_layout else value
        if converted.shape != shape and leaf in fmt.resize:
            try:
                converted = fmt.resize[leaf](converted, shape)
            except ValueError as error:
                mismatched.append(f"{key}: {error}")
                continue
        if converted.shape != shape:
            problem = f"{key} {tuple(value.shape)} -> {path} {shape}"
            (head_mismatch if path.startswith(HEAD) else mismatched).append(problem)
            continue
        arrays[path] = converted.astype(np.float32)
    new_head = any(path.startswith(HEAD) and path not in arrays for path in targets)
    reinitialised = tuple(path for path in targets if new_head and path.startswith(HEAD))
    uncovered = [path for path in targets if path not in seen and not path.startswith(HEAD)]
    problems = [
        _listed("source tensor(s) with no place in the model", unused),
        _listed("model variable(s) the weights do not cover", uncovered),
        _listed("shape mismatch(es)", mismatched),
    ]
    problems = [p for p in problems if p]
    if problems:
        raise MappingError(
            f"These {fmt.name} weights do not fit {model_name!r}: {'; '.join(problems)}."
        )
    for path in reinitialised:  # a head for another class count (or none): all of it kept fresh
        arrays.pop(path, None)
    if reinitialised:
        logging.info(
            "Pretrained %s weights: new head (%s), freshly initialised.",
            fmt.name,
            "; ".join(head_mismatch) or "none in the checkpoint",
        )
    return Conversion(format=fmt.name, arrays=arrays, reinitialised=reinitialised)


def _listed(kind: str, names: list[str]) -> str:
    if not names:
        return ""
    shown = ", ".join(names[:_SHOWN])
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return f"{len(names)} {kind}: {shown}{more}"
