"""What a config builds, shared by training, evaluation and prediction: model, optimiser, state.

Nothing here initialises parameters until asked: `abstract_state` is a shape-only template
(`jax.eval_shape`) to restore a checkpoint into, and `init_state` runs only for a new run.
"""

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import ml_collections
import optax

from bird_jax import augment, finetune, models, optim, train_step
from bird_jax.precision import get_policy
from bird_jax.pretrained import files, mapping
from bird_jax.train_step import (
    TrainState,
    create_train_state,
    make_train_step,
    unrolls_accumulation_by_default,
)


def create_model(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
    """The registry model named by `config.model_name`, computing in the policy's dtype."""
    return models.create_model(
        config.model_name,
        num_classes=num_classes,
        dtype=get_policy(config.precision).compute_dtype,
        **config.model.to_dict(),
    )


def abstract_init(
    config: ml_collections.ConfigDict, model: nn.Module, names: list[str] | None = None
) -> dict:
    """model.init's variables as shapes (`jax.eval_shape`, no compute). `names` receives the
    top-level params entries in creation (forward) order, read inside the trace: the pytree
    that eval_shape returns has its keys sorted."""

    def init(key, image):
        variables = model.init({"params": key, "dropout": key}, image, train=False)
        if names is not None:
            names.extend(variables["params"])
        return variables

    image = jax.ShapeDtypeStruct((1, config.data.image_size, config.data.image_size, 3), "float32")
    return jax.eval_shape(init, jax.ShapeDtypeStruct((2,), "uint32"), image)


def learning_rate_multipliers(
    config: ml_collections.ConfigDict, model: nn.Module
) -> dict[str, float] | None:
    """config.finetune's per-entry multipliers (None when it changes nothing)."""
    if not finetune.is_active(config.finetune):
        return None
    names: list[str] = []
    abstract_init(config, model, names)
    return finetune.learning_rate_multipliers(names, config.finetune)


def abstract_variables(config: ml_collections.ConfigDict, model: nn.Module) -> dict[str, dict]:
    """Shapes and dtypes of what evaluation restores (step, params, batch_stats, EMA params)."""
    variables = abstract_init(config, model)
    template = {"step": jax.ShapeDtypeStruct((), "int32"), "params": variables["params"]}
    if variables.get("batch_stats"):
        template["batch_stats"] = variables["batch_stats"]
    if config.eval_with_ema:
        if config.ema_decay <= 0:
            raise ValueError("eval_with_ema=True needs ema_decay > 0 during training.")
        template["ema_params"] = variables["params"]
    return template


def eval_variables(config: ml_collections.ConfigDict, restored: dict) -> dict:
    """`model.apply` variables from what `restore_variables` read into `abstract_variables`."""
    return train_step.eval_variables(
        restored["params"],
        restored.get("batch_stats"),
        restored.get("ema_params"),
        use_ema=config.eval_with_ema,
    )


@dataclasses.dataclass(frozen=True)
class Experiment:
    """The pieces of one training run, before any parameters exist."""

    config: ml_collections.ConfigDict
    model: nn.Module
    schedule: optax.Schedule
    tx: optax.GradientTransformation
    num_train_steps: int
    num_classes: int

    def init_state(self, pretrained: mapping.Conversion | None = None) -> TrainState:
        """Freshly initialised parameters (float32), optimizer state, EMA and RNG; with
        `pretrained` (see `load_pretrained`) the model starts from those weights."""
        return create_train_state(
            self.model,
            self.tx,
            image_size=self.config.data.image_size,
            seed=self.config.seed,
            use_ema=self.config.ema_decay > 0,
            pretrained=pretrained.apply_to if pretrained else None,
        )

    def load_pretrained(self) -> mapping.Conversion | None:
        """config.init_from read and mapped onto the model's shapes (no compute); None without
        it. Raises WeightsFileError / MappingError / ValueError with one line."""
        if not self.config.init_from:
            return None
        state = files.read_state(self.config.init_from)
        template = abstract_init(self.config, self.model)
        return mapping.convert_state(state, self.config.model_name, template)

    def abstract_state(self) -> TrainState:
        """The state's shapes and dtypes, without computing it: a restore template."""
        return jax.eval_shape(self.init_state)


def build(
    config: ml_collections.ConfigDict, class_names: list[str], num_train_examples: int
) -> Experiment:
    """Model, learning-rate schedule and optimiser for `config`."""
    if not class_names:
        raise ValueError("The dataset has no classes.")
    schedule = optim.learning_rate_schedule(config, num_train_examples)
    model = create_model(config, len(class_names))
    multipliers = learning_rate_multipliers(config, model)
    return Experiment(
        config=config,
        model=model,
        schedule=schedule,
        tx=optim.create_optimizer(config, schedule, multipliers),
        num_train_steps=optim.total_steps(config, num_train_examples),
        num_classes=len(class_names),
    )


def pmapped_train_step(
    config: ml_collections.ConfigDict, exp: Experiment, unroll_accumulation: bool | None = None
) -> Callable:
    """The shared pmapped train step with this config's device augmentation (data.train_pipeline),
    accumulation, label smoothing, EMA and precision (`unroll_accumulation`: train_step's)."""
    return make_train_step(
        model=exp.model,
        tx=exp.tx,
        schedule=exp.schedule,
        augment=augment.DeviceAugment.from_pipeline(
            augment.train_pipeline(config.data), config.data
        ),
        num_classes=exp.num_classes,
        grad_accum_steps=config.grad_accum_steps,
        label_smoothing=config.label_smoothing,
        ema_decay=config.ema_decay,
        loss_scaling=get_policy(config.precision).loss_scaling,
        frozen_batch_norm=config.finetune.batch_norm == "frozen",
        unroll_accumulation=unroll_accumulation,
    )


def flop_counted_train_step(config: ml_collections.ConfigDict, exp: Experiment) -> Callable | None:
    """The twin XLA counts in full where the train step rolls its accumulation loop (XLA counts
    a loop's body once): the step unrolled; None where it has no such loop."""
    if config.grad_accum_steps == 1 or unrolls_accumulation_by_default():
        return None
    return pmapped_train_step(config, exp, unroll_accumulation=True)
