"""What the MobileNetV2 and EfficientNet checkpoint formats share: the rules of one
inverted-residual block, and the renumbering of blocks into bird_jax's forward order."""

import re
from collections.abc import Callable, Mapping

from bird_jax.pretrained.formats import State, module_rules

# Layers of `bird_jax.models.inverted_residual.InvertedResidual` and their kinds.
LAYERS = {
    "expand": "dense",
    "expand_bn": "batch_norm",
    "depthwise": "dense",
    "depthwise_bn": "batch_norm",
    "se/reduce": "dense",
    "se/expand": "dense",
    "project": "dense",
    "project_bn": "batch_norm",
}


def block_rules(block: str, names: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Rules for the layers of every block: `block` matches a source block's name with its
    bird_jax number as group 1 (r"_blocks\\.(\\d+)"), `names` maps our layer names (keys of
    LAYERS) to the source's."""
    return tuple(
        rule
        for ours, theirs in names.items()
        for rule in module_rules(rf"{block}\.{re.escape(theirs)}", rf"block\1/{ours}", LAYERS[ours])
    )


def numbering_blocks(
    pattern: str, expanded: str, unexpanded: tuple[tuple[str, str], ...] = ()
) -> Callable[[State], State]:
    """A `Format.prepare` for libraries that number blocks by stage or from an offset, and name a
    block's layers by position.

    Each key that `pattern` matches at its start (its groups index a block, e.g.
    r"blocks\\.(\\d+)\\.(\\d+)\\.") is renamed "block{n}.{rest}", n counting the blocks in
    forward order from 0. In blocks without an expansion layer (no key whose rest starts with
    `expanded`), the first (old, new) prefix of `unexpanded` that starts the rest is replaced,
    so that the same layer has the same name in every block.
    """

    def prepare(state: State) -> State:
        blocks: dict[tuple[int, ...], dict[str, str]] = {}
        renamed = {}
        for key, value in state.items():
            match = re.match(pattern, key)
            if match:
                index = tuple(int(group) for group in match.groups())
                blocks.setdefault(index, {})[key] = key[match.end() :]
            else:
                renamed[key] = value
        for number, index in enumerate(sorted(blocks)):
            rests = blocks[index]
            with_expansion = any(rest.startswith(expanded) for rest in rests.values())
            for key, rest in rests.items():
                for old, new in () if with_expansion else unexpanded:
                    if rest.startswith(old):
                        rest = new + rest[len(old) :]
                        break
                renamed[f"block{number}.{rest}"] = state[key]
        return renamed

    return prepare
