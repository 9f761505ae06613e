"""Studies: variant selection, config overrides, early validation, and a whole tiny study."""

import json
import subprocess
import sys

import pytest

from bird_jax import compare, study
from tests.tiny_config import TOTAL_STEPS, tiny_config

REPO = __file__.rsplit("/tests/", 1)[0]


def test_unknown_study_or_variant_names_the_known_ones():
    with pytest.raises(ValueError, match="known studies: techniques, models"):
        study.variants("speed")
    with pytest.raises(ValueError, match=r"no variant\(s\) \['fp16'\]; its variants: float32"):
        study.variants("techniques", ["float32", "fp16"])
    assert list(study.variants("techniques", ["bfloat16_prefetch", "float32"])) == [
        "float32",
        "bfloat16_prefetch",
    ]  # the study's order


def test_overrides_set_dotted_keys_and_replace_sub_configs():
    config = tiny_config()
    changed = study.apply_overrides(
        config, {"precision": "bfloat16", "data.prefetch": 1, "model": {"batch_norm": True}}
    )
    assert (changed.precision, changed.data.prefetch) == ("bfloat16", 1)
    assert changed.model.to_dict() == {"batch_norm": True}
    assert config.precision == "float32" and "stage_widths" in config.model  # not modified
    with pytest.raises(KeyError, match="no key 'data.prefetch_depth'"):
        study.apply_overrides(config, {"data.prefetch_depth": 2})
    with pytest.raises(KeyError, match="no section 'optimizer'"):
        study.apply_overrides(config, {"optimizer.lr": 2})


def test_every_study_variant_applies_to_the_default_config(tmp_path):
    config = tiny_config()
    config.batch_size = 64
    (tmp_path / "w.pth").write_bytes(b"")
    weights = {name: str(tmp_path / "w.pth") for name in study.TRANSFER_MODELS}
    for name in study.STUDIES:
        given = weights if name == "transfer" else {}
        assert len(study.variant_configs(config, name, weights=given)) == len(study.STUDIES[name])


def test_transfer_variants_carry_their_recipe_and_need_their_weights(tmp_path):
    config = tiny_config()
    (tmp_path / "vit.pth").write_bytes(b"")
    (vit,) = study.variant_configs(
        config, "transfer", ["vit_b16"], {"vit_b16": str(tmp_path / "vit.pth")}
    ).values()
    assert vit.model_name == "vit_b16" and vit.init_from == str(tmp_path / "vit.pth")
    assert vit.finetune.layer_decay == 0.65 and tuple(vit.data.mean) == (0.5, 0.5, 0.5)
    assert vit.num_train_steps == config.num_train_steps  # the budget is the given config's
    with pytest.raises(ValueError, match=r"needs --weights=MODEL=PATH for \['resnet50'\]"):
        study.variant_configs(config, "transfer", ["vit_b16", "resnet50"], {"vit_b16": "x"})
    with pytest.raises(FileNotFoundError, match="--weights vit_b16=/none.pth: no such file"):
        study.variant_configs(config, "transfer", ["vit_b16"], {"vit_b16": "/none.pth"})
    with pytest.raises(ValueError, match="MODEL=PATH items"):
        study.parse_weights(["vit_b16:/w.pth"])


def test_a_variant_that_cannot_run_fails_before_anything_trains():
    config = tiny_config()  # batch 16 on 8 devices: 2 per device, not divisible into 4
    with pytest.raises(ValueError, match="grad_accum_steps=4"):
        study.variant_configs(config, "techniques")


def test_a_study_trains_evaluates_and_reports_each_variant(tmp_path):
    config = tiny_config()
    config.batch_size = 64
    configs = study.variant_configs(config, "techniques", ["float32", "bfloat16_accum4"])
    rows = study.run_study(configs, str(tmp_path), split="test")
    assert [row["run"] for row in rows] == ["float32", "bfloat16_accum4"]
    assert [(row["precision"], row["accumulation"]) for row in rows] == [
        ("float32", 1),
        ("bfloat16", 4),
    ]
    for row in rows:
        assert row["split"] == "test" and 0 <= row["accuracy"] <= 1
        assert row["steps"] == TOTAL_STEPS and row["energy_kwh"] > 0
    names = sorted(path.name for path in (tmp_path / "report").iterdir())
    assert names == sorted(["report.md", "report.csv", *compare.PLOTS])
    saved = json.loads((tmp_path / "bfloat16_accum4" / "config.json").read_text())
    assert saved["grad_accum_steps"] == 4 and saved["data"]["prefetch"] == 1


def test_command_line_rejects_an_unknown_study_before_training(tmp_path):
    command = [sys.executable, "-m", "bird_jax.study", "--config=tests/tiny_config.py",
               f"--workdir={tmp_path}", "--study=speed"]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0 and "known studies: techniques, models" in result.stderr
    assert not list(tmp_path.iterdir())
