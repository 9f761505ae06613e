"""torchvision VGG checkpoints (vgg11...vgg19, plain and `_bn`) onto `bird_jax.models.vgg.VGG`.

torchvision numbers the layers of `features` in one sequence (conv, [bn,] relu, ..., max pool)
and flattens the 7x7x512 features channel-first; bird_jax names layers by stage and flattens
channel-last, so the first Linear's input rows are reordered. torchvision's `_bn` convolutions
have a bias that BatchNorm cancels in training; bird_jax has none, and the bias is folded into
the running mean instead (exact in evaluation).
"""

from bird_jax.models.vgg import CONVS_PER_STAGE
from bird_jax.pretrained.formats import Format, State, module_rules, register


def _conv_indices(convs_per_stage: tuple[int, ...], batch_norm: bool) -> list[list[int]]:
    """Per stage, the `features` indices of its convolutions."""
    stages, index = [], 0
    for num_convs in convs_per_stage:
        stage = []
        for _ in range(num_convs):
            stage.append(index)
            index += 3 if batch_norm else 2  # conv, [bn,] relu
        stages.append(stage)
        index += 1  # max pool
    return stages


def _preparing(convs: list[int], batch_norm: bool):
    """prepare(): the first Linear's inputs reordered channel-last; for `_bn` weights each conv
    bias is subtracted from the next BatchNorm's running mean, then dropped."""

    def prepare(state: State) -> State:
        state = dict(state)
        weight, last_conv = (
            state.get("classifier.0.weight"),
            state.get(f"features.{convs[-1]}.weight"),
        )
        if weight is not None and last_conv is not None:
            channels = last_conv.shape[0]
            side = round((weight.shape[1] / channels) ** 0.5)
            if side * side * channels == weight.shape[1]:  # else left for the mapping to report
                weight = weight.reshape(-1, channels, side, side).transpose(0, 2, 3, 1)
                state["classifier.0.weight"] = weight.reshape(len(weight), -1)
        for index in convs if batch_norm else ():
            bias, mean = f"features.{index}.bias", f"features.{index + 1}.running_mean"
            if bias in state and mean in state:
                state[mean] = state[mean] - state.pop(bias)
        return state

    return prepare


def _register(name: str, convs_per_stage: tuple[int, ...], batch_norm: bool) -> Format:
    stages = _conv_indices(convs_per_stage, batch_norm)
    rules = ()
    for stage, indices in enumerate(stages):
        for i, index in enumerate(indices):
            rules += module_rules(rf"features\.{index}", f"stage{stage}_conv{i}", "dense")
            if batch_norm:
                rules += module_rules(
                    rf"features\.{index + 1}", f"stage{stage}_bn{i}", "batch_norm"
                )
    convs = [index for indices in stages for index in indices]
    return register(
        Format(
            f"torchvision_{name}{'_bn' if batch_norm else ''}",
            models=(name,),
            signature=tuple(f"features.{index}.weight" for index in convs),
            rules=(
                *rules,
                *module_rules(r"classifier\.0", "fc0", "dense"),
                *module_rules(r"classifier\.3", "fc1", "dense"),
                *module_rules(r"classifier\.6", "head", "dense"),
            ),
            prepare=_preparing(convs, batch_norm),
        )
    )


for _name, _convs in CONVS_PER_STAGE.items():
    for _batch_norm in (False, True):
        _register(_name, _convs, _batch_norm)
