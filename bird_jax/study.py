"""Studies: train one config in several variants, evaluate each, and compare them in one report.

  python -m bird_jax.study --study=techniques --config=configs/lightweight_cnn.py \
      --workdir=runs/techniques --config.data.root=/data/cub20 --split=test
  python -m bird_jax.study --study=models --config=configs/lightweight_cnn.py \
      --workdir=runs/models --config.data.root=/data/cub20 --config.num_train_steps=150

Studies (STUDIES):
  techniques  the "Accelerating Neural Network Training" review in this stack: float32; bfloat16;
              bfloat16 with 4-way gradient accumulation (same update batch, a quarter of the
              activation memory); bfloat16 with batches prefetched to the devices. Only the
              prefetch variant prefetches.
  models      VGG16 (with BatchNorm), the lightweight CNN and ConvNeXt-T, each with its config's
              architecture settings, trained with the given config's data, schedule and precision.
  distill     dataset distillation: every method (--variants; default all) at every --ipcs,
              evaluated by the protocol, beside networks trained on the whole split
              (--full_epochs), from a distillation config (bird_jax/distill/study.py):

  python -m bird_jax.study --study=distill --config=configs/distill/dm.py:birds_ipc1 \
      --workdir=runs/distill --config.data.root=/data/cub20 --ipcs=1,10 \
      --variants=random,dm,pca --config.distill.iterations=100

  transfer    pretrained families fine-tuned with one budget, each with its recipe
              (bird_jax.config.FINETUNE_RECIPES: lr, layer decay, regularisation, eval crop,
              mean/std); `--weights=MODEL=PATH,...` gives each variant its ImageNet weights:

  python -m bird_jax.study --study=transfer --config=configs/finetune.py --workdir=runs/dogs \
      --config.data.root=/data/dogs20 --variants=convnext_tiny,convnext_base,mobilenet_v2 \
      --weights=convnext_tiny=convnext_tiny.pth,convnext_base=convnext_base.pth,...

Variant v trains in workdir/v: running the command again resumes unfinished variants and only
re-evaluates finished ones. Each is evaluated on --split (default: the config's eval split, from
the final checkpoint), and bird_jax.compare writes the table and plots to workdir/report.
"""

import copy
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from bird_jax import cli, compare, console, evaluate, train
from bird_jax import config as defaults
from bird_jax.signals import Stopped, StopRequest

FLAGS = flags.FLAGS


def define_flags() -> None:
    """This command's flags (defined by cli.run, never on import)."""
    config_flags.DEFINE_config_file("config", None, "Config every variant starts from.")
    flags.DEFINE_string("workdir", None, "Study directory: one workdir per variant, and report/.")
    flags.DEFINE_string("study", None, "Which study (see STUDIES).")
    flags.DEFINE_list("variants", [], "Run only these variants of the study (default: all).")
    flags.DEFINE_list("weights", [], "transfer: MODEL=PATH pretrained weights of each variant.")
    flags.DEFINE_list("ipcs", ["1", "10"], "distill: images per class of every method.")
    flags.DEFINE_integer("full_epochs", 100, "distill: epochs on the whole split (0: none).")
    flags.DEFINE_string("split", None, "Split to evaluate and report (default: data.eval_split).")
    flags.mark_flags_as_required(["config", "workdir", "study"])


Overrides = Mapping[str, Any]  # dotted config key -> value; a Mapping value replaces a sub-config

_NO_PREFETCH = 1  # one batch in flight: each batch is placed on the devices when it is needed

# The families the studies behind bird_jax fine-tuned: the dogs report (ConvNeXt-T/B against
# MobileNetV2) and the acceleration review (EfficientNet-B0, ResNet-50, ViT).
TRANSFER_MODELS = (
    "mobilenet_v2", "efficientnet_b0", "efficientnet_lite0", "resnet50",
    "convnext_tiny", "convnext_base", "vit_b16",
)  # fmt: skip


def recipe_overrides(model_name: str) -> Overrides:
    """What the fine-tuning recipe of `model_name` sets, as overrides of another finetune
    config (its data and budget stay)."""
    recipe = defaults.finetune(model_name)
    return {
        "model_name": model_name,
        "model": recipe.model.to_dict(),
        "lr": recipe.lr,
        "data.eval_pipeline": recipe.data.eval_pipeline,
        "data.mean": recipe.data.mean,
        "data.std": recipe.data.std,
        "finetune.layer_decay": recipe.finetune.layer_decay,
    }


STUDIES: dict[str, dict[str, Overrides]] = {
    "techniques": {
        "float32": {"precision": "float32", "data.prefetch": _NO_PREFETCH},
        "bfloat16": {"precision": "bfloat16", "data.prefetch": _NO_PREFETCH},
        "bfloat16_accum4": {
            "precision": "bfloat16",
            "grad_accum_steps": 4,
            "data.prefetch": _NO_PREFETCH,
        },
        "bfloat16_prefetch": {"precision": "bfloat16", "data.prefetch": 2},
    },
    "models": {
        "vgg16": {"model_name": "vgg16", "model": {"batch_norm": True, "dropout_rate": 0.5}},
        "lightweight_cnn": {"model_name": "lightweight_cnn", "model": {}},
        "convnext_tiny": {"model_name": "convnext_tiny", "model": {"drop_path_rate": 0.1}},
    },
    "transfer": {name: recipe_overrides(name) for name in TRANSFER_MODELS},
}


def variants(study: str, names: Sequence[str] = ()) -> dict[str, Overrides]:
    """The study's variants (all, or `names`, in the study's order); ValueError if unknown."""
    if study not in STUDIES:
        raise ValueError(f"Unknown study {study!r}; known studies: {', '.join(STUDIES)}.")
    known = STUDIES[study]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(
            f"Study {study!r} has no variant(s) {unknown}; its variants: {', '.join(known)}."
        )
    return {name: overrides for name, overrides in known.items() if not names or name in names}


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Overrides
) -> ml_collections.ConfigDict:
    """A copy of `config` with `overrides` set; KeyError for a key the config does not have."""
    config = copy.deepcopy(config)
    for dotted, value in overrides.items():
        *parents, key = dotted.split(".")
        node = config
        for part in parents:
            node = node.get(part)
            if not isinstance(node, ml_collections.ConfigDict):
                raise KeyError(f"Config has no section {'.'.join(parents)!r} (from {dotted!r}).")
        if key not in node:
            raise KeyError(f"Config has no key {dotted!r}.")
        with node.unlocked():
            node[key] = ml_collections.ConfigDict(value) if isinstance(value, Mapping) else value
    return config


def run_variant(config: ml_collections.ConfigDict, workdir: str, split: str) -> None:
    """Trains (or resumes) one variant, then evaluates its final checkpoint on `split`."""
    results = train.train_and_evaluate(config, workdir)
    if split != config.data.eval_split:
        results = evaluate.evaluate_checkpoint(config, workdir, split=split)
    console.say(f"{workdir}: {split} top-1 {results['accuracy']:.1%}")


def variant_configs(
    config: ml_collections.ConfigDict,
    study: str,
    names: Sequence[str] = (),
    weights: Mapping[str, str] | None = None,
) -> dict[str, ml_collections.ConfigDict]:
    """Each chosen variant's config, validated, so bad settings fail before anything trains.

    `weights` (variant -> weights file) sets each variant's init_from; the transfer study
    needs one for every variant it runs."""
    weights = dict(weights or {})
    chosen = variants(study, names)
    stray = sorted(set(weights) - set(chosen))
    if stray:
        raise ValueError(f"--weights names {stray}, which are not variants being run.")
    missing = [name for name in chosen if study == "transfer" and name not in weights]
    if missing:
        raise ValueError(
            f"The transfer study needs --weights=MODEL=PATH for {missing} (or leave them out "
            "with --variants)."
        )
    configs = {}
    for name, overrides in chosen.items():
        if name in weights:
            if not os.path.isfile(weights[name]):
                raise FileNotFoundError(f"--weights {name}={weights[name]}: no such file.")
            overrides = {**overrides, "init_from": weights[name]}
        configs[name] = apply_overrides(config, overrides)
    for variant_config in configs.values():
        train.validate(variant_config)
    return configs


def parse_weights(items: Sequence[str]) -> dict[str, str]:
    """["mobilenet_v2=a.pth", ...] -> {"mobilenet_v2": "a.pth", ...}."""
    bad = [item for item in items if "=" not in item]
    if bad:
        raise ValueError(f"--weights takes MODEL=PATH items, got {bad}.")
    return dict(item.split("=", 1) for item in items)


def run_study(
    configs: Mapping[str, ml_collections.ConfigDict], workdir: str, split: str | None = None
) -> list[dict[str, Any]]:
    """Trains and evaluates the variants one after another in workdir/<variant>, writes the
    report to workdir/report and returns its rows."""
    split = split or next(iter(configs.values())).data.eval_split
    workdirs = [os.path.join(workdir, name) for name in configs]
    for (name, variant_config), variant_workdir in zip(configs.items(), workdirs, strict=True):
        logging.info("Variant %s -> %s.", name, variant_workdir)
        run_variant(variant_config, variant_workdir, split)
    rows = compare.compare(workdirs, split=split)
    compare.write_report(rows, os.path.join(workdir, "report"))
    return rows


def run_distill_study() -> None:
    """--study=distill: bird_jax.distill.study over --variants (methods) and --ipcs."""
    from bird_jax.distill import defaults as distill_defaults
    from bird_jax.distill import study

    ipcs = [int(ipc) for ipc in FLAGS.ipcs]
    method_names = FLAGS.variants or distill_defaults.METHODS
    configs = study.variant_configs(FLAGS.config, method_names, ipcs, FLAGS.full_epochs)
    stop = StopRequest().install()  # SIGTERM/Ctrl-C save the variant in progress
    print(study.markdown_table(study.run_study(configs, FLAGS.workdir, stop)))
    print(f"Report: {os.path.join(FLAGS.workdir, 'report')}")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if FLAGS.study == "distill":
        try:
            run_distill_study()
        except Stopped as stopped:  # the variant in progress saved its state
            logging.warning("%s", stopped)
            sys.exit(stopped.exit_code)
        return
    weights = parse_weights(FLAGS.weights)
    configs = variant_configs(FLAGS.config, FLAGS.study, FLAGS.variants, weights)
    try:
        rows = run_study(configs, FLAGS.workdir, FLAGS.split)
    except Stopped as stopped:  # the variant in progress saved a checkpoint
        logging.warning("%s", stopped)
        sys.exit(stopped.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    print(compare.markdown_table(rows))
    print(f"Report: {os.path.join(FLAGS.workdir, 'report')}")


if __name__ == "__main__":
    cli.run(main, define_flags)
