"""Checkpoint formats: how one framework's parameter names map onto a bird_jax model's.

A format is a table of regular-expression rules from source names (a PyTorch state dict's keys,
say `features.1.conv.0.0.weight`) to bird_jax variable paths (`params/block1/dw_conv/kernel`,
`batch_stats/block1/dw_bn/mean`). Layouts are converted from the shapes afterwards
(`bird_jax.pretrained.mapping`): OIHW -> HWIO convolution kernels (depthwise included),
(out, in) -> (in, out) Linear weights, 1x1 convolutions into Dense kernels. Families register
their formats where they are defined (`bird_jax/pretrained/<family>.py`).
"""

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping

import numpy as np

State = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Format:
    r"""How the checkpoints of one library name one model family's tensors.

    Attributes:
      name: e.g. "torchvision_mobilenet_v2"; shown in logs and errors.
      models: registry names (or prefixes ending in "_", e.g. "convnext_"; "*" for any) it
        loads into.
      signature: source keys that every checkpoint of this format has and no other format does.
      rules: (pattern, target) pairs; the first pattern that fully matches a source key gives its
        target path with `re` group references, e.g.
        (r"layer(\d)\.(\d+)\.bn1\.running_mean", r"batch_stats/layer\1_\2/bn1/mean").
      ignore: patterns of source keys that hold no parameter (BatchNorm's num_batches_tracked).
      prepare: rewrites the source state before renaming, for tensors that are merged or split
        (Hugging Face's separate query/key/value into one qkv).
      resize: target leaf name -> function(source array, target shape) that adapts a tensor whose
        shape depends on the input size (ViT's position embeddings); it raises ValueError when it
        cannot.
      torch_layout: whether kernels are PyTorch's (OIHW convolutions, (out, in) Linear) and need
        converting; False for files that bird_jax itself wrote.
    """

    name: str
    models: tuple[str, ...]
    signature: tuple[str, ...]
    rules: tuple[tuple[str, str], ...]
    ignore: tuple[str, ...] = (r".*num_batches_tracked",)
    prepare: Callable[[State], State] | None = None
    resize: Mapping[str, Callable[[np.ndarray, tuple[int, ...]], np.ndarray]] = dataclasses.field(
        default_factory=dict
    )
    torch_layout: bool = True

    def loads_into(self, model_name: str) -> bool:
        """Whether this format's checkpoints fit registry model `model_name`."""
        return any(
            m == "*" or (model_name.startswith(m) if m.endswith("_") else model_name == m)
            for m in self.models
        )

    def matches(self, keys: Iterable[str]) -> bool:
        """Whether a state dict with `keys` is in this format."""
        keys = set(keys)
        if self.name == BIRD_JAX:
            return all(key.startswith(("params/", "batch_stats/")) for key in keys)
        return set(self.signature) <= keys

    def target(self, key: str) -> str | None:
        """The bird_jax path of source `key`, or None when no rule matches it."""
        for pattern, template in self.rules:
            match = re.fullmatch(pattern, key)
            if match:
                return match.expand(template)
        return None

    def ignored(self, key: str) -> bool:
        """Whether source `key` holds nothing to load."""
        return any(re.fullmatch(pattern, key) for pattern in self.ignore)


_FORMATS: dict[str, Format] = {}
BIRD_JAX = "bird_jax"


def register(fmt: Format) -> Format:
    """Adds `fmt` to the formats `detect` knows; returns it."""
    if fmt.name in _FORMATS:
        raise ValueError(f"Checkpoint format {fmt.name!r} is registered twice.")
    _FORMATS[fmt.name] = fmt
    return fmt


def list_formats() -> list[str]:
    """Sorted names of the registered formats."""
    return sorted(_FORMATS)


def get_format(name: str) -> Format:
    """The registered format `name`."""
    if name not in _FORMATS:
        raise ValueError(f"Unknown checkpoint format {name!r}; known: {', '.join(list_formats())}.")
    return _FORMATS[name]


def strip_prefixes(state: State, prefixes: Iterable[str] = ("module.", "model.")) -> State:
    """Removes a wrapper's key prefix (DataParallel's "module.", a training script's "model.")
    when every key carries it."""
    for prefix in prefixes:
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix) :]: value for key, value in state.items()}
    return state


def detect(state: State, model_name: str) -> Format:
    """The format of `state` among those that load into `model_name`.

    Raises ValueError naming what the keys look like when no format fits, e.g. weights of
    another architecture.
    """
    keys = set(state)
    fitting = [fmt for fmt in _FORMATS.values() if fmt.matches(keys)]
    for fmt in fitting:
        if fmt.loads_into(model_name):
            return fmt
    if fitting:
        names = ", ".join(f"{fmt.name} (for {'/'.join(fmt.models)})" for fmt in fitting)
        raise ValueError(
            f"These weights are {names}, not for model {model_name!r}: set model_name to match "
            "the checkpoint or use weights of this model."
        )
    loadable = [fmt.name for fmt in _FORMATS.values() if fmt.loads_into(model_name)]
    sample = ", ".join(sorted(keys)[:4])
    raise ValueError(
        f"Unrecognised weights for {model_name!r} (keys like {sample}); formats for it: "
        f"{', '.join(loadable) or 'none'}."
    )


# What `python -m bird_jax.convert` writes: bird_jax paths and layouts already.
register(
    Format(BIRD_JAX, models=("*",), signature=(), rules=((r"(.*)", r"\1"),), torch_layout=False)
)


def module_rules(source: str, target: str, kind: str) -> tuple[tuple[str, str], ...]:
    """Rules for the tensors of one PyTorch module.

    `source` is a regex of the module's name (r"stages\\.(\\d+)\\.blocks\\.(\\d+)\\.conv_dw"),
    `target` the bird_jax module path under params (r"stage\\1_block\\2/dwconv"). `kind`:
    "dense" (convolution or Linear: weight -> kernel), "norm" (LayerNorm: weight -> scale) or
    "batch_norm" (also running_mean/var -> batch_stats mean/var).
    """
    weight = {"dense": "kernel", "norm": "scale", "batch_norm": "scale"}[kind]
    rules = [
        (rf"{source}\.weight", rf"params/{target}/{weight}"),
        (rf"{source}\.bias", rf"params/{target}/bias"),
    ]
    if kind == "batch_norm":
        rules += [
            (rf"{source}\.running_mean", rf"batch_stats/{target}/mean"),
            (rf"{source}\.running_var", rf"batch_stats/{target}/var"),
        ]
    return tuple(rules)
