"""Energy tracker on fake NVML and RAPL sensors, its fallbacks, and the CO2e and cost arithmetic."""

import json
import sys
import threading
import time
import types

import pytest

from bird_jax.efficiency import energy

NEVER = 3600.0  # a sample period no test reaches: read() and stop() alone drive the sampling


class FakeNVMLError(Exception):
    pass


class FakeNotSupported(FakeNVMLError):
    pass


def fake_pynvml(monkeypatch, *, gpus=2, energy_counter=True, power_mw=150_000):
    """Installs a fake `pynvml`; the returned namespace holds the sensor values tests change."""
    state = types.SimpleNamespace(
        energy_mj=[1_000_000] * gpus, power_mw=power_mw, fail=False, inits=0, shutdowns=0
    )

    def init():
        state.inits += 1

    def shutdown():
        state.shutdowns += 1

    def total_energy(handle):
        if not energy_counter:
            raise FakeNotSupported("Not Supported")
        if state.fail:
            raise FakeNVMLError("GPU is lost")
        return state.energy_mj[handle]

    module = types.ModuleType("pynvml")
    module.NVMLError = FakeNVMLError
    module.nvmlInit = init
    module.nvmlShutdown = shutdown
    module.nvmlDeviceGetCount = lambda: gpus
    module.nvmlDeviceGetHandleByIndex = lambda i: i
    module.nvmlDeviceGetName = lambda h: b"Fake H100" if h % 2 else "Fake H100"  # old: bytes
    module.nvmlDeviceGetTotalEnergyConsumption = total_energy
    module.nvmlDeviceGetPowerUsage = lambda handle: state.power_mw
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return state


@pytest.fixture
def no_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError


@pytest.fixture
def clock(monkeypatch):
    """A manual clock for the tracker: `clock.now` is what time.monotonic() returns."""
    fake = types.SimpleNamespace(now=100.0)
    monkeypatch.setattr(energy, "time", types.SimpleNamespace(monotonic=lambda: fake.now))
    return fake


def make_rapl(root, zones):
    """A fake powercap tree; `zones` maps a directory name to (domain name, counter, max range)."""
    for zone, (name, counter, max_range) in zones.items():
        path = root / zone
        path.mkdir(parents=True)
        (path / "name").write_text(name + "\n")
        (path / "energy_uj").write_text(f"{counter}\n")
        (path / "max_energy_range_uj").write_text(f"{max_range}\n")


def set_counter(root, zone, value):
    (root / zone / "energy_uj").write_text(f"{value}\n")


def tracker_threads():
    return [t for t in threading.enumerate() if t.name == "EnergyTracker"]


def test_estimate_when_no_sensor_is_present(no_nvml, clock, tmp_path):
    tracker = energy.EnergyTracker(estimate_watts=250, rapl_root=tmp_path / "missing").start()
    clock.now += 36.0
    reading = tracker.stop()
    assert reading.method == "estimated: 250 W x time"
    assert not reading.measured
    assert reading.sources == ()
    assert reading.seconds == pytest.approx(36.0)
    assert reading.joules == pytest.approx(9000.0)
    assert reading.kwh == pytest.approx(9000.0 / 3.6e6)
    assert reading.average_watts == pytest.approx(250.0)
    assert "NVML: pynvml not importable" in reading.fallback_reason
    assert "RAPL: LookupError" in reading.fallback_reason
    assert json.loads(json.dumps(reading.to_dict()))["method"] == reading.method


@pytest.mark.parametrize("broken", ["directory", "garbage", "no_range"])
def test_unreadable_rapl_falls_back_to_estimate(no_nvml, tmp_path, broken):
    make_rapl(tmp_path, {"intel-rapl:0": ("package-0", 5, 100)})
    counter = tmp_path / "intel-rapl:0" / "energy_uj"
    if broken == "directory":  # unreadable as a file even for root, like a root-only counter
        counter.unlink()
        counter.mkdir()
    elif broken == "garbage":
        counter.write_text("not a number")
    else:
        (tmp_path / "intel-rapl:0" / "max_energy_range_uj").unlink()
    with energy.EnergyTracker(estimate_watts=40, rapl_root=tmp_path) as tracker:
        pass
    reading = tracker.read()
    assert not reading.measured and reading.method.startswith("estimated")
    assert "RAPL: " in reading.fallback_reason
    assert not tracker_threads()


def test_nvml_without_driver_falls_back(monkeypatch, tmp_path):
    fake_pynvml(monkeypatch)

    def no_driver():
        raise FakeNVMLError("Driver Not Loaded")

    monkeypatch.setattr(sys.modules["pynvml"], "nvmlInit", no_driver)
    reading = energy.EnergyTracker(estimate_watts=10, rapl_root=tmp_path).start().stop()
    assert not reading.measured
    assert "NVML: FakeNVMLError: Driver Not Loaded" in reading.fallback_reason


def test_rapl_sums_packages_handles_wraps_and_reads_cumulatively(no_nvml, tmp_path):
    big = 10**12
    make_rapl(
        tmp_path,
        {
            "intel-rapl:0": ("package-0", 5_000_000, big),
            "intel-rapl:0/intel-rapl:0:0": ("core", 0, big),  # subzone of package-0: not counted
            "intel-rapl:1": ("package-1", 900, 1000),  # wraps at 1000 uJ
            "intel-rapl:2": ("psys", 0, big),  # the whole platform: contains the packages
            "intel-rapl-mmio:0": ("package-0", 0, big),  # a second view of package-0
        },
    )
    tracker = energy.EnergyTracker(estimate_watts=1, sample_seconds=NEVER, rapl_root=tmp_path)
    tracker.start()
    steps = [  # (package-0, package-1, expected cumulative uJ)
        (5_000_400, 950, 450),
        (5_000_400, 100, 450 + 150),  # package-1 wrapped: 950 -> 1000 -> 100
        (5_001_000, 50, 450 + 150 + 600 + 950),  # wrapped again: 100 -> 1000 -> 50
    ]
    readings = []
    for package0, package1, expected_uj in steps:
        set_counter(tmp_path, "intel-rapl:0", package0)
        set_counter(tmp_path, "intel-rapl:1", package1)
        set_counter(tmp_path, "intel-rapl:0/intel-rapl:0:0", 10**9)
        set_counter(tmp_path, "intel-rapl:2", 10**9)
        readings.append(tracker.read())
        assert readings[-1].joules == pytest.approx(expected_uj / 1e6)
    final = tracker.stop()
    assert final.joules == pytest.approx(2150 / 1e6)
    assert [r.joules for r in readings] == sorted(r.joules for r in readings)
    assert final.method == "measured: RAPL" and final.measured
    assert final.sources == ("package-0", "package-1")
    assert final.fallback_reason.startswith("NVML: ")
    assert not tracker_threads()


def test_nvml_energy_counter_sums_gpus(monkeypatch, tmp_path):
    gpus = fake_pynvml(monkeypatch)
    tracker = energy.EnergyTracker(estimate_watts=1, rapl_root=tmp_path).start()
    assert not tracker_threads()  # the counter needs no polling
    gpus.energy_mj = [1_005_000, 1_007_000]
    middle = tracker.read()
    gpus.energy_mj = [1_005_000 + 1_800_000, 1_007_000 + 1_800_000]
    final = tracker.stop()
    assert middle.joules == pytest.approx(12.0)
    assert final.joules == pytest.approx(3612.0)
    assert final.kwh == pytest.approx(0.001 + 12.0 / 3.6e6)
    assert final.method == "measured: NVML energy counter" and final.measured
    assert final.sources == ("GPU 0: Fake H100", "GPU 1: Fake H100")
    assert final.fallback_reason is None
    assert (gpus.inits, gpus.shutdowns) == (1, 1)


def test_nvml_power_sampling_in_a_thread_integrates_constant_power(monkeypatch, tmp_path):
    gpus = fake_pynvml(monkeypatch, energy_counter=False, power_mw=150_000)
    tracker = energy.EnergyTracker(estimate_watts=1, sample_seconds=0.01, rapl_root=tmp_path)
    tracker.start()
    assert len(tracker_threads()) == 1
    time.sleep(0.2)
    reading = tracker.stop()
    assert reading.joules == pytest.approx(300.0 * reading.seconds, rel=1e-9)
    assert reading.average_watts == pytest.approx(300.0, rel=1e-9)
    assert reading.method == "measured: NVML power sampling" and reading.measured
    assert "NVML energy counter: FakeNotSupported" in reading.fallback_reason
    assert not tracker_threads()
    assert gpus.shutdowns == 1


def test_power_sampling_is_a_trapezoid_integral(monkeypatch, clock, tmp_path):
    gpus = fake_pynvml(monkeypatch, gpus=1, energy_counter=False, power_mw=100_000)
    tracker = energy.EnergyTracker(estimate_watts=1, sample_seconds=NEVER, rapl_root=tmp_path)
    tracker.start()
    clock.now += 2.0
    gpus.power_mw = 200_000
    assert tracker.read().joules == pytest.approx(300.0)  # (100 + 200) / 2 W * 2 s
    clock.now += 3.0
    gpus.power_mw = 0
    assert tracker.stop().joules == pytest.approx(600.0)  # + (200 + 0) / 2 W * 3 s


def test_sensor_failing_mid_run_turns_the_run_into_an_estimate(monkeypatch, clock, tmp_path):
    gpus = fake_pynvml(monkeypatch)
    tracker = energy.EnergyTracker(estimate_watts=50, rapl_root=tmp_path).start()
    clock.now += 4.0
    gpus.energy_mj = [2_000_000, 2_000_000]
    assert tracker.read().measured
    gpus.fail = True
    clock.now += 6.0
    reading = tracker.stop()
    assert not reading.measured
    assert reading.joules == pytest.approx(500.0)  # 50 W over the whole 10 s
    assert "measured: NVML energy counter failed mid-run" in reading.fallback_reason
    assert gpus.shutdowns == 1


def test_gpus_follow_cuda_visible_devices_unless_given(monkeypatch, tmp_path):
    fake_pynvml(monkeypatch, gpus=4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    visible = energy.EnergyTracker(estimate_watts=1, rapl_root=tmp_path).start().stop()
    chosen = energy.EnergyTracker(estimate_watts=1, device_indices=[0, 2], rapl_root=tmp_path)
    assert visible.sources == ("GPU 3: Fake H100",)
    assert [s[:5] for s in chosen.start().stop().sources] == ["GPU 0", "GPU 2"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [(None, [0, 1, 2, 3]), ("", []), ("-1", []), ("2,0", [2, 0]), ("1,7,0", [1]),
     ("GPU-8f2a", [0, 1, 2, 3])],
)  # fmt: skip
def test_cuda_visible_devices_parsing(monkeypatch, env, expected):
    if env is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", env)
    assert energy._cuda_visible(4) == expected


def test_tracker_lifecycle(no_nvml, tmp_path):
    tracker = energy.EnergyTracker(estimate_watts=1, rapl_root=tmp_path)
    with pytest.raises(RuntimeError, match="start"):
        tracker.read()
    with tracker, pytest.raises(RuntimeError, match="already"):
        tracker.start()  # the `with` already started it
    assert tracker.read() is tracker.stop() is tracker.stop()  # frozen after stop
    with pytest.raises(ValueError):
        energy.EnergyTracker(estimate_watts=1, sample_seconds=0)


def test_co2_and_cost():
    assert energy.co2_kg(2.5, 400) == pytest.approx(1.0)
    assert energy.co2_kg(0.0, 400) == 0.0
    assert energy.cost(3.0, 2.5) == pytest.approx(7.5)
    with pytest.raises(ValueError):
        energy.co2_kg(-1.0, 400)
    with pytest.raises(ValueError):
        energy.cost(1.0, -2.0)


def test_energy_report_combines_reading_co2_and_cost():
    reading = energy.EnergyReading(
        kwh=2.0,
        joules=7.2e6,
        seconds=5400.0,
        average_watts=1333.3,
        method="measured: NVML energy counter",
        measured=True,
        sources=("GPU 0: H100", "GPU 1: H100"),
        fallback_reason=None,
    )
    report = energy.EnergyReport(
        reading, num_devices=2, grid_gco2_per_kwh=300, price_per_device_hour=4
    )
    row = json.loads(json.dumps(report.to_dict()))
    assert row["device_hours"] == pytest.approx(3.0)
    assert row["co2_kg"] == pytest.approx(0.6)
    assert row["cost"] == pytest.approx(12.0)
    assert row["measured"] is True and row["sources"] == ["GPU 0: H100", "GPU 1: H100"]
    assert row["kwh"] == 2.0 and row["method"] == reading.method
