"""Beyond one process: DistributedDataParallel under torchrun (gloo on the CPU), and parallel sweeps
with Hydra's joblib launcher."""

import os
import subprocess

import pytest
import torch
import yaml

from gan_cli import checkpoint
from tests.test_cli import TINY, run
from tests.conftest import BIN


def torchrun(*args, cwd, processes=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [str(BIN / "torchrun"), "--standalone", f"--nproc_per_node={processes}", str(BIN / "gan-train"), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def test_two_processes_stay_in_sync_write_once_and_resume_in_one(tmp_path):
    # dcgan nets have batch norm, whose buffers DDP broadcasts from rank 0.
    command = [*TINY, "trainer.ckpt_every=2", "trainer.keep_checkpoints=0", "trainer.g_ema=0.9"]
    result = torchrun(*command, "trainer.steps=4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "x 2 processes" in result.stdout
    assert "weights of G and D identical on all 2 processes" in result.stdout
    (run_dir,) = [p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir()]  # one folder for both
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    assert sorted(p.name for p in (run_dir / ".hydra").iterdir()) == ["config.yaml", "hydra.yaml", "overrides.yaml"]

    state = checkpoint.load(run_dir)
    assert state["step"] == 4 and len(state["ranks"]) == 2
    first, second = state["ranks"]
    # Each process draws its own noise and takes its own share of the data.
    assert not torch.equal(first["rng"]["torch"], second["rng"]["torch"])
    assert not torch.equal(first["data"]["order"], second["data"]["order"])

    result = torchrun(f"resume={run_dir}", "trainer.steps=6", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "weights of G and D identical on all 2 processes" in result.stdout
    assert checkpoint.load(run_dir)["step"] == 6
    # The resumed run equals a straight one: G_ema too (it was once overwritten with G's weights).
    straight = tmp_path / "straight"
    straight.mkdir()
    assert torchrun(*command, "trainer.steps=6", cwd=straight).returncode == 0
    (straight_dir,) = [p for p in (straight / "outputs").glob("*/*") if p.is_dir()]
    a, b = checkpoint.load(straight_dir), checkpoint.load(run_dir / "checkpoints" / "step_0000006.pt")
    for part in ("nets", "ema"):
        for name in a[part]:
            assert all(torch.equal(a[part][name][k], b[part][name][k]) for k in a[part][name]), (part, name)

    result = run(f"resume={run_dir}", "trainer.steps=8", cwd=tmp_path)  # one process
    assert result.returncode == 0, result.stderr
    assert checkpoint.load(run_dir)["step"] == 8


def test_a_bad_value_under_torchrun_is_one_line(tmp_path):
    # Rank 0 says it; the other process waits until torchrun ends it, so the line cannot be lost to the
    # order in which the processes happen to exit.
    result = torchrun(*TINY, "trainer.precision=fp8", cwd=tmp_path)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("gan-train: error: ")]
    assert errors == ["gan-train: error: unknown trainer.precision 'fp8'; choose 32, bf16 or 16"]


def test_joblib_launcher_runs_a_sweep_in_parallel_processes(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    result = run("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "loss=minimax,hinge", *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    jobs = sorted(p for p in (tmp_path / "outputs" / "multirun").glob("*/*/*") if p.is_dir())
    assert [j.name for j in jobs] == ["0", "1"]
    assert jobs[0].parent == jobs[1].parent and (jobs[0].parent / "multirun.yaml").is_file()  # one sweep, one folder
    assert {checkpoint.load(j)["config"]["loss"]["name"] for j in jobs} == {"minimax", "hinge"}
    hydra_config = yaml.safe_load((jobs[0] / ".hydra" / "hydra.yaml").read_text())
    assert "joblib" in hydra_config["hydra"]["launcher"]["_target_"].lower()
