"""The launch scripts' own logic, without a cluster: bash only, fake Slurm variables and a fake
`srun`, `tpu_pod.sh --dry_run`, and the remote unpack step of `tpu_pod.sh sync` run locally."""

import os
import subprocess
import tarfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TPU_POD = os.path.join(REPO, "launch", "tpu_pod.sh")
SBATCH = os.path.join(REPO, "launch", "slurm.sbatch")


def _bash(args, env=None, cwd=REPO):
    return subprocess.run(["bash", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def _sbatch_env(tmp_path, **extra):
    """The environment of a Slurm batch step, with a fake srun that prints the GPU ids."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir(exist_ok=True)
    srun = fake_bin / "srun"
    srun.write_text('#!/bin/sh\necho "srun JAX_LOCAL_DEVICE_IDS=$JAX_LOCAL_DEVICE_IDS"\n')
    srun.chmod(0o755)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    (venv / "bin" / "activate").write_text("")
    if not (venv / "bin" / "python").exists():
        (venv / "bin" / "python").symlink_to("/bin/true")  # srun is fake: never run
    return {"PATH": f"{fake_bin}:/usr/bin:/bin", "HOME": str(tmp_path), "SLURM_JOB_ID": "7",
            "CONFIG": "tests/tiny_config.py", "WORKDIR": str(tmp_path / "run"),
            "REPO_DIR": REPO, "VENV": str(venv), **extra}  # fmt: skip


def test_slurm_script_refuses_to_guess_the_gpu_count(tmp_path):
    result = _bash([SBATCH], _sbatch_env(tmp_path))
    assert result.returncode == 2 and "cannot tell how many GPUs" in result.stderr
    for variables, ids in [({"SLURM_GPUS_PER_NODE": "a100:4"}, "0,1,2,3"),
                           ({"SLURM_GPUS_ON_NODE": "2"}, "0,1"),
                           ({"CUDA_VISIBLE_DEVICES": "4,5,6"}, "0,1,2")]:  # fmt: skip
        result = _bash([SBATCH], _sbatch_env(tmp_path, **variables))
        assert result.returncode == 0, result.stderr
        assert f"srun JAX_LOCAL_DEVICE_IDS={ids}" in result.stdout
    result = _bash([SBATCH], _sbatch_env(tmp_path, WORKDIR="gs://bucket/run"))
    assert result.returncode == 2 and "URLs are not supported" in result.stderr


def _tpu_pod(*args):
    env = {**os.environ, "TPU_NAME": "birds", "ZONE": "us-west4-a"}
    return subprocess.run(["bash", TPU_POD, "--dry_run", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_tpu_pod_accelerator_names_and_workdir():
    result = _tpu_pod("create", "--accelerator_type=v5e-16")
    assert result.returncode == 2 and "'v5litepod-16' in gcloud" in result.stderr
    result = _tpu_pod("create", "--accelerator_type=v5litepod-16")
    assert result.returncode == 0 and "--version=v2-alpha-tpuv5-lite" in result.stderr
    result = _tpu_pod("run", "--config=configs/quickstart.py", "--workdir=gs://bucket/run")
    assert result.returncode == 2 and "URLs are refused" in result.stderr
    result = _tpu_pod("run", "--config=configs/quickstart.py", "--workdir=/mnt/runs/q")
    assert result.returncode == 2 and "--shared_workdir" in result.stderr
    result = _tpu_pod("run", "--config=configs/quickstart.py", "--workdir=/mnt/runs/q",
                      "--shared_workdir")  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_tpu_pod_sync_keeps_files_it_did_not_copy(tmp_path):
    """The remote half of `sync`, run here: files of the previous sync that the tree lost go,
    anything else in the remote folder (a dataset, the venv, logs, notes) stays."""
    functions = tmp_path / "functions.sh"
    with open(TPU_POD) as file:
        blocks = file.read().split("\n\n")
    wanted = [block for block in blocks if block.startswith(("q() {", "unpack_script() {"))]
    assert len(wanted) == 2
    functions.write_text("\n\n".join(wanted) + "\nREMOTE_DIR=bird_jax\nMANIFEST=.synced\n")
    home = tmp_path / "home"
    home.mkdir()

    def sync(files: dict[str, str]):
        source = tmp_path / "source"
        for name, text in files.items():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_text(text)
        with tarfile.open(home / "bird_jax_src.tar.gz", "w:gz") as tar:
            for name in files:
                tar.add(source / name, arcname=name)
        result = _bash(["-c", f'source {functions} && bash -c "$(unpack_script)"'], cwd=home)
        assert result.returncode == 0, result.stderr

    sync({"bird_jax/a.py": "a", "bird_jax/removed.py": "old"})
    remote = home / "bird_jax"
    (remote / "data").mkdir()
    (remote / "data" / "train.csv").write_text("mine")
    (remote / ".venv").mkdir()
    (remote / "bird_jax" / "notes.txt").write_text("mine")
    sync({"bird_jax/a.py": "a2", "bird_jax/new.py": "new"})
    files = sorted(str(p.relative_to(remote)) for p in remote.rglob("*") if p.is_file())
    assert files == [".synced", "bird_jax/a.py", "bird_jax/new.py", "bird_jax/notes.txt",
                     "data/train.csv"]  # fmt: skip
    assert (remote / "bird_jax" / "a.py").read_text() == "a2"
