"""End to end: train, stop on a signal, resume, refuse bad checkpoints, evaluate, predict."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from bird_jax import data, experiment, predict, train
from bird_jax.checkpoints import BEST, IncompatibleCheckpointError, RunCheckpoints
from bird_jax.evaluate import evaluate_checkpoint
from bird_jax.signals import Stopped
from bird_jax.workdir import checkpoint_metadata
from tests.tiny_config import TOTAL_STEPS, tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _final_state(config, workdir):
    info = data.load_splits(config.data)
    exp = experiment.build(config, info.class_names, info.num_examples("train"))
    ckpts = RunCheckpoints(workdir, metadata=checkpoint_metadata(config, info.class_names))
    state, data_state = ckpts.restore(exp.abstract_state())
    ckpts.close()
    return state, data_state


def _max_diff(a, b):
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in pairs)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One uninterrupted tiny run, shared by the tests below."""
    workdir = str(tmp_path_factory.mktemp("uninterrupted"))
    config = tiny_config()
    config.log_input_grid = True  # does not change training
    results = train.train_and_evaluate(config, workdir)
    return workdir, results


def test_training_writes_reports_and_checkpoints(trained_run):
    workdir, results = trained_run
    assert set(results) >= {"accuracy", "top5_accuracy", "loss", "macro_f1"}
    for name in ("config.json", "labels.json", "eval_valid.json", "confusion_valid.csv",
                 "confusion_valid.png", "efficiency.json"):  # fmt: skip
        assert os.path.exists(os.path.join(workdir, name)), name
    events = Path(workdir).glob("events.out.tfevents*")
    logged = b"".join(path.read_bytes() for path in events)
    for tag in (b"visual/0_first_batch", b"visual/01_original", b"valid/confusion_matrix",
                b"valid/kwh", b"efficiency", b"_hparams_/experiment"):  # fmt: skip
        assert tag in logged, tag
    state, _ = _final_state(tiny_config(), workdir)
    assert int(state.step) == TOTAL_STEPS


def test_efficiency_report_accounts_for_the_run(trained_run):
    workdir, _ = trained_run
    with open(os.path.join(workdir, "efficiency.json")) as f:
        report = json.load(f)
    times = report["time"]
    assert report["trained_steps"] == TOTAL_STEPS
    assert times["timed_steps"] >= 1 and 0 < times["step_p50_s"] <= times["step_p90_s"]
    phases = sum(times[f"{phase}_s"] for phase in ("compile", "train", "eval", "input_wait"))
    assert times["compile_s"] > 0 and times["eval_s"] > 0 and phases <= times["wall_s"]
    flops = report["flops"]
    # Every local device runs the step: 8 fake CPU devices here, 1 on one GPU (benchmarks/device).
    per_step = jax.local_device_count() * flops["per_step_per_device"]
    assert flops["per_step"] == pytest.approx(per_step)
    assert flops["per_image"] > 0 and 0 < flops["mfu"] < 1
    assert report["throughput"]["images_per_s"] > 0
    energy = report["energy"]
    assert energy["kwh"] > 0 and energy["co2_kg"] == pytest.approx(energy["kwh"] * 0.475)
    assert energy["method"].startswith(("measured", "estimated"))


def test_sigterm_saves_and_resume_continues_exactly(trained_run, tmp_path, monkeypatch):
    uninterrupted, _ = trained_run
    workdir = str(tmp_path)
    calls = {"n": 0}
    original_next = data.TrainIterator.__next__

    def next_then_preempt(self):
        calls["n"] += 1
        if calls["n"] == 4:  # a preemption notice arrives while step 4 runs
            os.kill(os.getpid(), signal.SIGTERM)
        return original_next(self)

    monkeypatch.setattr(data.TrainIterator, "__next__", next_then_preempt)
    with pytest.raises(Stopped, match="step 4; run the same command to resume") as stopped:
        train.train_and_evaluate(tiny_config(), workdir)
    assert stopped.value.exit_code == 0
    stopped, _ = _final_state(tiny_config(), workdir)
    assert int(stopped.step) == 4  # saved at the step it was stopped, off the 3-step schedule

    monkeypatch.setattr(data.TrainIterator, "__next__", original_next)
    train.train_and_evaluate(tiny_config(), workdir)  # the same command again resumes
    resumed, resumed_data = _final_state(tiny_config(), workdir)
    reference, reference_data = _final_state(tiny_config(), uninterrupted)
    assert int(resumed.step) == TOTAL_STEPS
    with open(os.path.join(workdir, "efficiency.json")) as f:
        efficiency = json.load(f)  # the cost of both segments
    spans = [(segment["start_step"], segment["end_step"]) for segment in efficiency["segments"]]
    assert spans == [(0, 4), (4, TOTAL_STEPS)]
    assert efficiency["total"]["trained_steps"] == TOTAL_STEPS
    assert efficiency["total"]["kwh"] > efficiency["energy"]["kwh"] > 0
    assert resumed_data == reference_data  # same data position
    assert _max_diff(resumed.params, reference.params) < 1e-6
    assert _max_diff(resumed.batch_stats, reference.batch_stats) < 1e-6
    assert _max_diff(resumed.ema_params, reference.ema_params) < 1e-6
    assert _max_diff(resumed.opt_state, reference.opt_state) < 1e-6


def test_incompatible_checkpoint_is_refused(trained_run):
    workdir, _ = trained_run
    config = tiny_config()
    config.model.head_features = 32
    with pytest.raises(IncompatibleCheckpointError, match="head_features"):
        train.train_and_evaluate(config, workdir)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"data.classes": tuple("012345678")}, r"class_names: checkpoint has \['0', .*'9'\], "
         r"this config \['0', .*'8'\]"),
        ({"ema_decay": 0.0}, r"state structure \(the checkpoint has ema_params \(\d+ arrays\) "
         r"that this run has not\)"),
    ],
    ids=["classes", "state"],
)  # fmt: skip
def test_changed_classes_or_state_structure_is_refused(trained_run, change, message):
    """A checkpoint of another class set, or of another state structure (here without the EMA),
    is refused with one short line that says what differs."""
    workdir, _ = trained_run
    config = tiny_config()
    config.update_from_flattened_dict(change)
    with pytest.raises(IncompatibleCheckpointError, match=message) as refused:
        train.train_and_evaluate(config, workdir)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 400


def test_checkpoint_arrays_of_another_shape_are_refused(trained_run):
    """Orbax would restore an array of another shape as it is: the restore compares shapes."""
    workdir, _ = trained_run
    config = tiny_config()
    exp = experiment.build(config, [str(i) for i in range(10)], num_train_examples=100)
    template = exp.abstract_state()
    kernel = template.params["head"]["kernel"]
    template.params["head"]["kernel"] = jax.ShapeDtypeStruct((17, 10), kernel.dtype)
    with pytest.raises(IncompatibleCheckpointError, match=r"params.head.kernel \(16, 10\) vs "):
        _checkpoints(config, workdir).restore(template)


@pytest.mark.parametrize(
    "precision, dtype, loss_scaling",
    [("float32", jnp.float32, False), ("bfloat16", jnp.bfloat16, False),
     ("float16", jnp.float16, True)],
)  # fmt: skip
def test_precision_sets_the_compute_dtype_and_loss_scaling(
    precision, dtype, loss_scaling, monkeypatch
):
    """config.precision reaches the model's activations and the train step's loss scaling;
    parameters stay float32."""
    config = tiny_config()
    config.precision = precision
    exp = experiment.build(config, [str(i) for i in range(10)], num_train_examples=100)
    state = exp.abstract_state()
    image = jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32)
    _, captured = jax.eval_shape(
        lambda params, batch_stats, x: exp.model.apply(
            {"params": params, "batch_stats": batch_stats}, x,
            capture_intermediates=True, mutable=["intermediates"],
        ),
        state.params, state.batch_stats, image,
    )  # fmt: skip
    assert captured["intermediates"]["stem"]["__call__"][0].dtype == dtype
    assert {leaf.dtype for leaf in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
    step_kwargs = {}
    monkeypatch.setattr(experiment, "make_train_step", lambda **kwargs: step_kwargs.update(kwargs))
    experiment.pmapped_train_step(config, exp)
    assert step_kwargs["loss_scaling"] is loss_scaling


def test_the_flops_twin_exists_only_where_the_step_rolls_its_accumulation(monkeypatch):
    config = tiny_config()
    exp = experiment.build(config, [str(i) for i in range(10)], num_train_examples=100)
    step_kwargs = {}
    monkeypatch.setattr(experiment, "make_train_step", lambda **kwargs: step_kwargs.update(kwargs))
    config.grad_accum_steps = 2
    assert experiment.flop_counted_train_step(config, exp) is None  # CPU: already unrolled
    monkeypatch.setattr(experiment, "unrolls_accumulation_by_default", lambda: False)  # GPU/TPU
    experiment.flop_counted_train_step(config, exp)
    assert step_kwargs["unroll_accumulation"] is True and step_kwargs["grad_accum_steps"] == 2
    config.grad_accum_steps = 1
    assert experiment.flop_counted_train_step(config, exp) is None  # no accumulation: no loop


# Validation accuracy reported at each evaluation of the scripted run: the best is step 6.
SCRIPTED_ACCURACY = {3: 0.5, 6: 0.9, 9: 0.7, 12: 0.8}


@pytest.fixture(scope="module")
def scripted_run(tmp_path_factory):
    """A tiny run with scripted validation accuracies: 6 steps evaluating the EMA, then resumed
    to 12 evaluating the trained parameters. Returns (workdir, the best step before the resume,
    {step: (the parameters evaluated, the real results)})."""
    workdir = str(tmp_path_factory.mktemp("scripted"))
    evaluations = {}
    real_evaluate = train.evaluate_and_report

    def scripted(p_eval_step, variables, *args, step, **kwargs):
        results = real_evaluate(p_eval_step, variables, *args, step=step, **kwargs)
        evaluations[step] = (jax.tree.map(lambda x: np.asarray(x[0]), variables["params"]), results)
        return {**results, "accuracy": SCRIPTED_ACCURACY[step]}

    config = _scripted_config(eval_with_ema=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train, "evaluate_and_report", scripted)
        train.train_and_evaluate(config, workdir)
        best_before_resume = _checkpoints(config, workdir).step(BEST)
        config.num_train_steps = 12
        config.eval_with_ema = False
        train.train_and_evaluate(config, workdir)
    return workdir, best_before_resume, evaluations


def _scripted_config(eval_with_ema: bool):
    config = tiny_config()
    config.lr = 0.5  # peak 0.03 at batch 16: the parameters move well away from their EMA
    config.eval_with_ema = eval_with_ema
    return config


def _checkpoints(config, workdir):
    info = data.load_splits(config.data)
    return RunCheckpoints(workdir, metadata=checkpoint_metadata(config, info.class_names))


def test_best_checkpoint_holds_the_most_accurate_step_across_a_resume(scripted_run):
    """checkpoints_best/ holds the step of highest validation accuracy: step 6 (0.9) replaces
    step 3 (0.5), and the resumed run's 0.7 and 0.8 do not replace it."""
    workdir, best_before_resume, evaluations = scripted_run
    assert best_before_resume == 6
    config = _scripted_config(eval_with_ema=True)
    ckpts = _checkpoints(config, workdir)
    model = experiment.create_model(config, num_classes=10)
    best = ckpts.restore_variables(experiment.abstract_variables(config, model), which=BEST)
    ckpts.close()
    assert int(best["step"]) == 6
    assert _max_diff(best["ema_params"], evaluations[6][0]) == 0.0  # what step 6 evaluated


def test_evaluation_uses_ema_params_only_when_asked(scripted_run):
    """eval_with_ema=True evaluates the EMA parameters, False the trained ones: in training
    (the scripted run switched at its resume) and from a checkpoint."""
    workdir, _, evaluations = scripted_run
    ema_config, raw_config = (_scripted_config(eval_with_ema=use) for use in (True, False))
    final, _ = _final_state(raw_config, workdir)
    evaluated, results = evaluations[12]
    assert _max_diff(evaluated, final.params) == 0.0
    assert _max_diff(final.params, final.ema_params) > 1e-3
    ckpts = _checkpoints(ema_config, workdir)
    model = experiment.create_model(ema_config, num_classes=10)
    step_6 = ckpts.restore_variables(experiment.abstract_variables(ema_config, model), which=BEST)
    ckpts.close()
    assert _max_diff(evaluations[6][0], step_6["ema_params"]) == 0.0
    assert _max_diff(evaluations[6][0], step_6["params"]) > 1e-3

    loss = lambda config: evaluate_checkpoint(config, workdir, split="valid")["loss"]
    assert loss(raw_config) == pytest.approx(results["loss"], rel=1e-6)
    # 12 steps teach the tiny model little: the EMA's loss differs by about 1e-4 (relative).
    assert loss(ema_config) != pytest.approx(results["loss"], rel=2e-5)


def test_evaluate_best_checkpoint_on_test_split(trained_run):
    workdir, _ = trained_run
    results = evaluate_checkpoint(tiny_config(), workdir, split="test", which="best")
    assert 0.0 <= results["accuracy"] <= 1.0
    assert os.path.exists(os.path.join(workdir, "eval_test.json"))


def test_predictor_names_classes_for_photos(trained_run):
    workdir, _ = trained_run
    predictor = predict.Predictor(workdir)
    photo = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    ranked = predictor.top_k(photo, k=3)
    assert len(ranked) == 3
    assert all(name in [str(i) for i in range(10)] for name, _ in ranked)
    probabilities = [p for _, p in ranked]
    assert probabilities == sorted(probabilities, reverse=True)
    assert 0.0 < sum(probabilities) <= 1.0 + 1e-6


def _cli(*args, timeout=300):
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_predict_cli_prints_top_k_and_reports_unreadable_files(trained_run, tmp_path):
    workdir, _ = trained_run
    good = tmp_path / "bird.png"
    Image.fromarray(np.full((20, 20, 3), 200, np.uint8)).save(good)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not an image")
    result = _cli(
        "-m", "bird_jax.predict", f"--workdir={workdir}", "--top_k=2", str(good), str(corrupt)
    )
    assert result.returncode == 1, result.stderr[-2000:]
    (line,) = result.stdout.strip().splitlines()
    assert line.startswith(f"{good}: ") and line.count("%") == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"{corrupt}: cannot read image")
    assert "orbax" not in result.stderr.lower()  # library chatter stays out of the terminal


def test_predict_refuses_missing_files_before_loading(trained_run, tmp_path):
    workdir, _ = trained_run
    result = _cli("-m", "bird_jax.predict", f"--workdir={workdir}", str(tmp_path / "nope.jpg"))
    assert result.returncode == 2
    assert result.stderr == f"bird_jax: error: no such image file(s): {tmp_path / 'nope.jpg'}.\n"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--config.batch_sise=32"], "no key 'batch_sise'. Did you mean \"batch_size\""),
        (["--config.data.train_pipeline=flip_lrr"], "Did you mean ['flip_lr']"),
        (["--config.data.source=folder", "--config.data.root=/no/birds"], "/no/birds"),
    ],
)
def test_user_errors_are_one_line_before_training(tmp_path, args, message):
    result = _cli(
        "-m", "bird_jax.main", "--config=configs/quickstart.py", f"--workdir={tmp_path}", *args
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("bird_jax: error: ") and len(result.stderr.splitlines()) == 1
    assert message in result.stderr
    assert not os.path.exists(tmp_path / "checkpoints")


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("model_name", "resnet9000", "Unknown model 'resnet9000'"),
        ("precision", "fp8", "config.precision"),
        ("batch_size", 12, "multiple of"),
        ("grad_accum_steps", 3, "grad_accum_steps=3"),
    ],
)
def test_bad_config_values_fail_with_clear_errors(tmp_path, field, value, message):
    config = tiny_config()
    config[field] = value
    with pytest.raises(ValueError, match=message):
        train.train_and_evaluate(config, str(tmp_path))
    assert not os.path.exists(tmp_path / "checkpoints")


def test_missing_dataset_folder_fails_before_training(tmp_path):
    config = tiny_config()
    config.data.source = "folder"
    config.data.root = str(tmp_path / "no_such_birds")
    with pytest.raises(FileNotFoundError, match="no_such_birds"):
        train.train_and_evaluate(config, str(tmp_path / "run"))


@pytest.mark.parametrize("signum,expected_exit", [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_signal_to_a_running_process_saves_a_checkpoint(tmp_path, signum, expected_exit):
    process = subprocess.Popen(
        [sys.executable, "-m", "bird_jax.main", "--config=tests/tiny_config.py",
         f"--workdir={tmp_path}", "--config.num_train_steps=100000",
         "--config.checkpoint_every_steps=100000", "--config.eval_every_steps=100000"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    log = []
    for line in process.stdout:  # wait until steps are running, then signal
        log.append(line)
        if "steps/s" in line:
            process.send_signal(signum)
            break
    log.extend(process.stdout)
    assert process.wait(timeout=120) == expected_exit, "".join(log)[-3000:]
    saved = [int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()]
    assert saved and 0 < max(saved) < 100000
    assert "run the same command to resume" in "".join(log)
