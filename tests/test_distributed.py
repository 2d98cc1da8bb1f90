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


def test_submitit_local_runs_a_sweep_as_slurm_would(tmp_path):
    # The SLURM launcher's local twin: each job pickled, started as its own process by submitit, its logs in
    # the sweep's .submitit folder. hydra/launcher=submitit_slurm differs in where the processes run.
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    result = run("-m", "hydra/launcher=submitit_local", "loss=minimax,hinge", *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    jobs = sorted(p for p in (tmp_path / "outputs" / "multirun").glob("*/*/[0-9]") if p.is_dir())
    assert [j.name for j in jobs] == ["0", "1"] and jobs[0].parent == jobs[1].parent
    assert {checkpoint.load(j)["config"]["loss"]["name"] for j in jobs} == {"minimax", "hinge"}
    logs = list((jobs[0].parent / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2 and all("Job completed successfully" in log.read_text() for log in logs)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_nodes(*args, cwd):
    """Two torchrun launches of one process each, as two machines would start them (--nnodes=2, c10d
    rendezvous), here both on this machine in one folder (a cluster's shared file system)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    endpoint = f"127.0.0.1:{free_port()}"
    command = [str(BIN / "torchrun"), "--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d",
               f"--rdzv_endpoint={endpoint}", "--rdzv_id=two-nodes", str(BIN / "gan-train"), *args]
    nodes = [subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    for node, (_, err) in zip(nodes, outputs):
        assert node.returncode == 0, err[-3000:]
    return "".join(out for out, _ in outputs)


def test_two_nodes_write_one_run_stay_identical_and_resume_exactly(tmp_path):
    command = [*TINY, "trainer.ckpt_every=2", "trainer.keep_checkpoints=0"]
    out = two_nodes(*command, "trainer.steps=4", cwd=tmp_path)
    assert "x 2 processes" in out and "weights of G and D identical on all 2 processes" in out
    (run_dir,) = [p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir()]  # one folder for both nodes
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1 and len(checkpoint.load(run_dir)["ranks"]) == 2
    two_nodes(f"resume={run_dir}", "trainer.steps=6", cwd=tmp_path)
    # The same as two processes on one machine trained straight to step 6.
    straight = tmp_path / "straight"
    straight.mkdir()
    assert torchrun(*command, "trainer.steps=6", cwd=straight).returncode == 0
    (straight_dir,) = [p for p in (straight / "outputs").glob("*/*") if p.is_dir()]
    a, b = checkpoint.load(straight_dir), checkpoint.load(run_dir / "checkpoints" / "step_0000006.pt")
    for name in a["nets"]:
        assert all(torch.equal(a["nets"][name][k], b["nets"][name][k]) for k in a["nets"][name]), name


class _Game:
    """What wrap() asks of a game: its nets and which of them a penalty differentiates twice."""

    def __init__(self, twice=()):
        self.nets = {"G": torch.nn.Sequential(torch.nn.Linear(2, 2)),
                     "D": torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))}
        self.twice = set(twice)

    def differentiated_twice(self):
        return self.twice


def test_sync_batchnorm_is_opt_in_and_refused_where_it_cannot_work():
    from gan_cli import UserError
    from gan_cli.train import wrap

    options = {"sync_batchnorm": True, "compile": False}
    cpu = torch.device("cpu")
    with pytest.raises(UserError, match="D has batch norm and its gradient penalty differentiates it twice") as e:
        wrap(_Game(twice={"D"}), options, 2, cpu)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="needs CUDA devices"):
        wrap(_Game(), options, 2, cpu)
    # One process: nothing to pool, nothing converted; G has no batch norm, so it is never refused.
    game = _Game(twice={"G"})
    running, frozen = wrap(game, options, 1, cpu)
    assert running["D"] is game.nets["D"] and isinstance(game.nets["D"][1], torch.nn.BatchNorm2d)
