"""benchmarks/device/run.py, the prepared GPU check: what can be checked without a GPU."""

import importlib.util
import os
import subprocess
import sys
import types

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(REPO, "benchmarks", "device", "run.py")
_spec = importlib.util.spec_from_file_location("device_check_run", RUN)
run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run)


def test_without_a_gpu_it_stops_at_once_with_exit_status_2(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": REPO}
    result = subprocess.run(
        [sys.executable, RUN, f"--out={tmp_path}"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 2, result.stderr
    assert "no GPU found (jax.default_backend() == 'cpu')" in result.stderr
    assert not os.listdir(tmp_path)


def test_nvml_monitor_reads_energy_per_part(monkeypatch):
    state = types.SimpleNamespace(energy_mj=5_000_000)
    sample = lambda value: lambda *args: value  # noqa: E731
    nvml = types.ModuleType("pynvml")
    nvml.NVML_CLOCK_SM, nvml.NVML_TEMPERATURE_GPU = 1, 0
    nvml.nvmlInit = nvml.nvmlShutdown = sample(None)
    nvml.nvmlDeviceGetHandleByIndex = sample("gpu0")
    nvml.nvmlDeviceGetName = sample(b"NVIDIA H100 80GB HBM3")
    nvml.nvmlSystemGetDriverVersion = sample("580.159.04")
    nvml.nvmlSystemGetCudaDriverVersion = sample(13000)
    nvml.nvmlDeviceGetEnforcedPowerLimit = sample(700_000)
    nvml.nvmlDeviceGetMemoryInfo = sample(types.SimpleNamespace(total=80 * 2**30, used=2**30))
    nvml.nvmlDeviceGetMaxClockInfo = sample(1980)
    nvml.nvmlDeviceGetTotalEnergyConsumption = lambda handle: state.energy_mj
    nvml.nvmlDeviceGetPowerUsage = sample(350_000)
    nvml.nvmlDeviceGetUtilizationRates = sample(types.SimpleNamespace(gpu=97))
    nvml.nvmlDeviceGetTemperature = sample(61)
    nvml.nvmlDeviceGetClockInfo = sample(1755)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monitor = run.NvmlMonitor(period_s=0.01)
    monitor.mark("quickstart", "start")
    state.energy_mj += 1_800_000  # 1.8 kJ
    monitor.mark("quickstart", "end")
    monitor.close()
    part = monitor.summary("quickstart")
    assert monitor.reason is None and monitor.info["name"] == "NVIDIA H100 80GB HBM3"
    assert monitor.info["power_limit_w"] == 700 and monitor.info["energy_counter"]
    assert part["joules"] == pytest.approx(1800.0) and part["wh"] == pytest.approx(0.5)
    assert part["method"] == "NVML counter" and part["max_w"] == 350
    assert (part["max_memory_gib"], part["mean_util_pct"], part["max_temp_c"]) == (1.0, 97, 61)


def test_nvml_monitor_without_pynvml_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monitor = run.NvmlMonitor()
    monitor.mark("tests", "start")
    monitor.close()
    assert monitor.nvml is None and "pynvml" in monitor.reason
    assert monitor.summary("tests") is None


def test_junit_outcomes_and_skip_reasons(tmp_path):
    xml = tmp_path / "tests.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_train_step" name="test_a" time="1.5"/>'
        '<testcase classname="tests.test_train_step" name="test_b" time="0.1">'
        '<skipped message="needs 8 gpu devices, found 1"/></testcase>'
        '<testcase classname="tests.test_train" name="test_c" time="2">'
        '<failure message="assert 0.1 &lt; 1e-06">trace</failure></testcase>'
        "</testsuite></testsuites>"
    )
    result = run.parse_junit(xml)
    assert result["counts"] == {"passed": 1, "failed": 1, "error": 0, "skipped": 1}
    assert result["tests"][1] == {
        "test": "test_train_step::test_b",
        "outcome": "skipped",
        "seconds": 0.1,
        "note": "needs 8 gpu devices, found 1",
    }
    assert "error" in run.parse_junit(tmp_path / "missing.xml")


def _record(framework, images_per_s, **extra):
    return {
        "framework": framework,
        "model": "convnext_tiny",
        "precision": "bfloat16",
        "image_size": 224,
        "grad_accum_steps": 1,
        "images_per_s_median": images_per_s,
        **extra,
    }


def test_throughput_records_pair_with_torch_and_judge_the_target(tmp_path):
    log = tmp_path / "throughput.log"
    lines = [
        "I1127 some absl line",
        run.json.dumps(_record("bird_jax", 3000.0, mfu=0.47)),
        run.json.dumps(_record("torch", 2500.0, mfu=0.39)),
    ]
    log.write_text("\n".join(lines) + "\n")
    rows = run.pair_records(run.parse_records(log))
    assert len(rows) == 1 and rows[0]["ours_over_torch"] == pytest.approx(1.2)
    assert run.target_verdict(rows, dry_run=False)["met"] is True
    slow = run.pair_records([_record("bird_jax", 2000.0, mfu=0.31), _record("torch", 2500.0)])
    assert run.target_verdict(slow, dry_run=False)["met"] is False
    failed = run.pair_records(
        [_record("bird_jax", 2000.0, mfu=0.31), _record("torch", 0, failed=True)]
    )
    assert run.target_verdict(failed, dry_run=False)["met"] is None
    assert run.target_verdict([], dry_run=False)["met"] is None
