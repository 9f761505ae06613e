"""The comparison report on synthetic workdirs shaped like a real run's files."""

import csv
import json
import subprocess
import sys

import pytest
from absl import flags
from absl.testing import flagsaver
from PIL import Image

from bird_jax import compare
from bird_jax.workdir import NotARunError


@pytest.fixture(scope="module", autouse=True)
def compare_flags():
    """--out and --split, as `python -m bird_jax.compare` defines them (importing defines none)."""
    if "out" not in flags.FLAGS:
        compare.define_flags()


def write_run(
    path, *, model="lightweight_cnn", precision="float32", accum=1, measured=False, efficiency=True
):
    """A workdir with config.json, eval_valid.json and (optionally) efficiency.json."""
    path.mkdir()
    config = {
        "model_name": model,
        "precision": precision,
        "grad_accum_steps": accum,
        "data": {
            "eval_split": "valid",
            "prefetch": 2,
            "train_pipeline": 'random_resized_crop(scale=(0.35, 1))|flip_lr|randaugment("rand-m9")',
        },
        "efficiency": {"grid_gco2_per_kwh": 475.0, "price_per_device_hour": 2.0},
    }
    evaluation = {"split": "valid", "num_examples": 180, "accuracy": 0.75, "macro_f1": 0.7}
    summary = {
        "time": {"wall_s": 125.0, "compile_s": 9.7, "step_p50_s": 0.0898, "timed_steps": 260},
        "trained_steps": 264,
        "throughput": {"images_per_s": 712.66, "devices": 1, "device_kind": "cpu"},
        "flops": {"per_step": 1.15e9, "mfu": 0.0479, "peak_source": "measured CPU matmul"},
        "memory": {"peak_bytes_per_device": None, "host_peak_rss_bytes": 1512071168},
        "energy": {"kwh": 0.00069443, "measured": measured, "co2_kg": 0.00032985, "cost": 0.0214},
        "target": None,
    }
    (path / "config.json").write_text(json.dumps(config))
    (path / "eval_valid.json").write_text(json.dumps(evaluation))
    if efficiency:
        (path / "efficiency.json").write_text(json.dumps(summary))
    return path


@pytest.fixture
def runs(tmp_path):
    return [
        write_run(tmp_path / "a"),
        write_run(tmp_path / "b", model="convnext_tiny", precision="bfloat16", measured=True),
        write_run(tmp_path / "c", accum=4, efficiency=False),
    ]


def test_rows_hold_the_runs_values(runs):
    a, b, c = compare.compare(runs)
    assert a["run"] == "a" and a["model"] == "lightweight_cnn" and c["accumulation"] == 4
    assert a["augmentation"] == "random_resized_crop + flip_lr + randaugment"
    assert a["accuracy"] == 0.75 and a["macro_f1"] == 0.7 and a["split"] == "valid"
    assert a["mfu_percent"] == pytest.approx(4.79)
    assert a["co2_g"] == pytest.approx(0.32985)
    assert a["energy_measured"] is False and b["energy_measured"] is True
    cells = compare.table_cells(a)
    assert cells["energy"] == "0.694 Wh (est.)"
    assert compare.table_cells(b)["energy"] == "0.694 Wh"
    assert (cells["accuracy"], cells["MFU"], cells["time"]) == ("75.0%", "4.79%", "2 min 05 s")


def test_a_resumed_run_reports_the_total_of_its_segments(runs):
    efficiency = json.loads((runs[0] / "efficiency.json").read_text())
    efficiency["total"] = {
        "segments": 2, "trained_steps": 300, "wall_s": 400.0, "kwh": 0.002, "co2_kg": 0.00095,
        "cost": 0.05, "measured": False,
    }  # fmt: skip
    (runs[0] / "efficiency.json").write_text(json.dumps(efficiency))
    row = compare.load_run(runs[0])
    assert (row["steps"], row["wall_s"], row["energy_kwh"]) == (300, 400.0, 0.002)
    assert (row["co2_g"], row["cost"]) == (pytest.approx(0.95), 0.05)
    assert compare.load_run(runs[1])["steps"] == 264  # no total: its one segment


def test_missing_efficiency_shows_dashes_but_keeps_the_row(runs):
    row = compare.load_run(runs[2])
    assert row["accuracy"] == 0.75 and row["wall_s"] is None and row["energy_measured"] is None
    table = compare.markdown_table(compare.compare(runs)).splitlines()
    assert len(table) == 2 + 3
    cells = [cell.strip() for cell in table[-1].strip("|").split("|")]
    assert cells[0] == "c" and cells[-6:] == [compare.DASH] * 6


def test_a_directory_that_is_not_a_run_is_named_in_the_error(tmp_path):
    (tmp_path / "notes").mkdir()
    with pytest.raises(NotARunError, match=r"notes has no readable config\.json"):
        compare.load_run(tmp_path / "notes")
    with pytest.raises(NotARunError, match="missing is not a directory"):
        compare.load_run(tmp_path / "missing")


def test_split_test_reads_eval_test_json(runs):
    evaluation = {"split": "test", "accuracy": 0.5, "macro_f1": 0.4}
    (runs[0] / "eval_test.json").write_text(json.dumps(evaluation))
    first, second = compare.compare(runs[:2], split="test")
    assert (first["split"], first["accuracy"], first["macro_f1"]) == ("test", 0.5, 0.4)
    assert second["accuracy"] is None and second["images_per_s"] == 712.66


def test_write_report_writes_table_csv_and_plots(runs, tmp_path):
    rows = compare.compare(runs)
    paths = compare.write_report(rows, tmp_path / "out")
    names = ["report.md", "report.csv", *compare.PLOTS]
    assert [p.name for p in paths] == names and all(p.is_file() for p in paths)
    assert paths[0].read_text().strip() == compare.markdown_table(rows)
    with open(paths[1], newline="") as file:
        table = list(csv.reader(file))
    assert len(table) == 1 + len(rows) and {len(line) for line in table} == {len(rows[0])}
    assert table[0] == list(rows[0]) and table[3][table[0].index("energy_kwh")] == ""
    for path in paths[2:]:
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) >= 300
        assert path.stat().st_size > 10_000


def test_main_prints_and_writes_the_report(runs, tmp_path, capsys):
    out = tmp_path / "out"
    (tmp_path / "notes").mkdir()
    with flagsaver.flagsaver(out=str(out), split=None):
        compare.main(["compare", *map(str, runs)])
        with pytest.raises(NotARunError, match="notes has no readable config"):
            compare.main(["compare", str(runs[0]), str(tmp_path / "notes")])
    printed = capsys.readouterr().out
    assert "| a | lightweight_cnn | float32 | 1 | 2 |" in printed and "0.694 Wh (est.)" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["report.md", "report.csv", *compare.PLOTS]
    )


def test_command_line_runs_end_to_end(runs, tmp_path):
    out = tmp_path / "cli"
    command = [sys.executable, "-m", "bird_jax.compare", f"--out={out}", *map(str, runs[:2])]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "| b | convnext_tiny | bfloat16 |" in result.stdout
    assert (out / "throughput.png").is_file()


def test_unset_price_shows_a_dash_and_a_missing_evaluation_names_the_command(runs, capsys):
    config = json.loads((runs[0] / "config.json").read_text())
    config["efficiency"]["price_per_device_hour"] = 0.0
    (runs[0] / "config.json").write_text(json.dumps(config))
    assert compare.load_run(runs[0])["cost"] is None
    assert compare.table_cells(compare.load_run(runs[0]))["cost"] == compare.DASH
    with flagsaver.flagsaver(out=str(runs[0].parent / "out"), split="test"):
        compare.main(["compare", str(runs[0])])
    expected = f"--mode=evaluate --workdir={runs[0]} --split=test --checkpoint=best"
    assert expected in capsys.readouterr().err


def test_cli_error_is_one_line_without_traceback(tmp_path):
    command = [sys.executable, "-m", "bird_jax.compare", str(tmp_path / "missing")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("bird_jax: error: ")
    assert "Traceback" not in result.stderr and "missing is not a directory" in result.stderr
