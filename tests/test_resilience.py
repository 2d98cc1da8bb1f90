"""Never lose a run: checkpoints that survive kill -9, exact and guarded resume, signals, the NaN guard,
safe loading, mixed precision and bad values caught before any work."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch
from omegaconf import OmegaConf

from gan_cli import UserError, checkpoint, losses
from gan_cli.train import train
from tests.conftest import BIN, tiny_config
from tests.test_cli import TINY, assert_one_line_error, run

# A toy2d run long enough to be interrupted; each step takes a few milliseconds.
LONG_TOY = ["model=gan", "dataset=toy2d", "trainer.steps=200000", "trainer.batch_size=8", "generator.hidden=[8]",
            "discriminator.hidden=[8]", "trainer.device=cpu", "trainer.progress=false", "trainer.sample_every=0",
            "trainer.log_every=50"]


def start(args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([str(BIN / "gan-train"), *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(predicate, timeout=120):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# --- checkpoints ---------------------------------------------------------------------------------


def test_only_the_newest_periodic_checkpoints_are_kept(tmp_path):
    train(tiny_config("trainer.steps=6", "trainer.ckpt_every=1", "trainer.keep_checkpoints=2"), tmp_path)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["last.pt", "step_0000005.pt", "step_0000006.pt"]
    assert checkpoint.load(tmp_path)["step"] == 6
    train(tiny_config("trainer.steps=3", "trainer.ckpt_every=1", "trainer.keep_checkpoints=0"), tmp_path / "all")
    assert len(list((tmp_path / "all" / "checkpoints").glob("step_*.pt"))) == 3


def test_kill_9_leaves_a_loadable_checkpoint_of_a_finished_step(tmp_path):
    run_dir = tmp_path / "run"
    proc = start([*LONG_TOY, "trainer.ckpt_every=1", "trainer.keep_checkpoints=1", f"hydra.run.dir={run_dir}"], tmp_path)
    last = run_dir / "checkpoints" / "last.pt"
    wait_for(lambda: last.exists() and checkpoint.load(last)["step"] >= 30)
    proc.send_signal(signal.SIGKILL)  # in the middle of some step, maybe of a write
    proc.wait()
    state = checkpoint.load(last)
    assert state["step"] >= 30
    assert set(state["nets"]["G"]) and all(torch.isfinite(v).all() for v in state["nets"]["G"].values())
    result = run(f"resume={run_dir}", f"trainer.steps={state['step'] + 2}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert checkpoint.load(last)["step"] == state["step"] + 2


# --- resume --------------------------------------------------------------------------------------


def test_resume_refuses_a_changed_config_unless_told(tmp_path):
    train(tiny_config("trainer.steps=2"), tmp_path)
    resume = OmegaConf.create({"resume": str(tmp_path)})
    with pytest.raises(UserError, match=r"resume would change optimizer.lr \(0.0002 -> 0.1\), trainer.batch_size") as e:
        train(resume, tmp_path, overrides=["trainer.steps=3", "optimizer.lr=0.1", "trainer.batch_size=4"])
    assert "resume_override=true" in str(e.value)
    assert checkpoint.load(tmp_path)["step"] == 2  # nothing was trained
    # How long to train and how to watch it may change freely; the rest with resume_override=true.
    train(resume, tmp_path, overrides=["trainer.steps=3", "trainer.log_every=5"])
    train(resume, tmp_path, overrides=["trainer.steps=4", "optimizer.lr=0.1", "resume_override=true"])
    state = checkpoint.load(tmp_path)
    assert state["step"] == 4 and state["config"]["optimizer"]["lr"] == 0.1
    assert state["optimizers"]["G"]["param_groups"][0]["lr"] == 0.1


def test_resume_continues_bit_identically_in_bf16(tmp_path):
    base = ("trainer.precision=bf16", "trainer.log_every=1")
    straight = train(tiny_config(*base, "trainer.steps=4"), tmp_path / "straight")
    train(tiny_config(*base, "trainer.steps=2"), tmp_path / "split")
    split = train(OmegaConf.create({"resume": str(tmp_path / "split")}), tmp_path / "split", overrides=["trainer.steps=4"])
    a, b = checkpoint.load(tmp_path / "straight"), checkpoint.load(tmp_path / "split")
    assert all(torch.equal(a["nets"]["G"][k], b["nets"]["G"][k]) for k in a["nets"]["G"])
    assert all(torch.equal(a["nets"]["D"][k], b["nets"]["D"][k]) for k in a["nets"]["D"])
    assert straight["logged"]["loss/D"] == split["logged"]["loss/D"]


# --- signals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_finishes_the_step_checkpoints_and_says_how_to_resume(sig, tmp_path):
    run_dir = tmp_path / "run"
    proc = start([*LONG_TOY, "trainer.ckpt_every=0", f"hydra.run.dir={run_dir}"], tmp_path)
    wait_for(lambda: any(run_dir.glob("events.out.tfevents.*")))
    time.sleep(1.0)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    state = checkpoint.load(run_dir)
    assert 0 < state["step"] < 200000
    assert f"stopped at step {state['step']} of 200000" in err
    recorded = json.loads((run_dir / "metrics.json").read_text())  # how it ended, for a sweep's summary
    assert recorded["status"] == "stopped" and recorded["step"] == state["step"] and "objective" not in recorded
    assert recorded["reason"] == f"stopped by {signal.Signals(sig).name} at step {state['step']} of 200000"
    assert "Continue with: gan-train resume=run\n" in err  # relative to where it was started
    assert "Traceback" not in err
    result = run(f"resume={run_dir}", f"trainer.steps={state['step'] + 3}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert checkpoint.load(run_dir)["step"] == state["step"] + 3


def test_a_second_signal_exits_at_once(tmp_path):
    script = (
        "import os, signal, time\n"
        "from gan_cli.safety import StopSignals\n"
        "with StopSignals() as s:\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(0.2)\n"
        "    assert s.received == signal.SIGINT\n"
        "    print('still running', flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(5)\n"
        "print('not reached')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 128 + signal.SIGINT
    assert result.stdout == "still running\n"
    assert "SIGINT again: exiting now" in result.stderr


# --- the NaN guard -------------------------------------------------------------------------------


def test_a_non_finite_loss_stops_the_run_and_spares_the_last_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    d_loss = losses.NonSaturating.d_loss

    def poisoned(self, real_scores, fake_scores):
        calls["n"] += 1
        value = d_loss(self, real_scores, fake_scores)
        return value * float("nan") if calls["n"] == 3 else value

    monkeypatch.setattr(losses.NonSaturating, "d_loss", poisoned)
    config = tiny_config("trainer.steps=10", "trainer.ckpt_every=2", "trainer.log_every=10", "trainer.sample_every=0")
    with pytest.raises(UserError, match=r"loss/D is nan at step 3; training stopped, .*last.pt still holds step 2"):
        train(config, tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.pt", "step_0000002.pt"]
    assert checkpoint.load(tmp_path)["step"] == 2


def test_a_diverging_run_is_a_one_line_error(tmp_path):
    result = run(*TINY, "trainer.steps=20", "optimizer.lr=1e30", "optimizer.d_lr=1e30", "trainer.log_every=5", cwd=tmp_path)
    assert_one_line_error(result, "is nan at step", "training stopped")


# --- safe loading --------------------------------------------------------------------------------


class RunsACommand:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "G": RunsACommand(marker)}, path)
    with pytest.raises(UserError, match="refusing to load .*evil.pt: it holds more than tensors and plain data"):
        checkpoint.load(path)
    assert not marker.exists()
    result = run(f"resume={path}", cwd=tmp_path)
    assert_one_line_error(result, "refusing to load")
    assert not marker.exists()
    # The same bytes through plain pickle would have run the command: the test's payload is real.
    pickle.loads(pickle.dumps(RunsACommand(marker)))
    assert marker.exists()


def test_truncated_and_foreign_files_are_one_line_errors(tmp_path):
    train(tiny_config(), tmp_path / "run")
    good = (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    (tmp_path / "text.pt").write_text("hello\n")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    for name, message in [("truncated.pt", "truncated or not a checkpoint"), ("text.pt", "truncated or not a checkpoint"),
                          ("other.pt", "is not a gan-cli checkpoint")]:
        with pytest.raises(UserError, match=message):
            checkpoint.load(tmp_path / name)
        assert_one_line_error(run(f"resume={tmp_path / name}", cwd=tmp_path), message)


def test_weights_of_other_nets_are_one_line_errors(tmp_path):
    """A checkpoint whose nets were built differently (an older version, a file edited by hand)."""
    train(tiny_config(), tmp_path / "run")
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    state = checkpoint.load(path)
    G, D = state["nets"]["G"], state["nets"]["D"]
    renamed = dict(state, nets={"G": {k.replace("net.", "body."): v for k, v in G.items()}, "D": D})
    resized = dict(state, nets={"G": G, "D": {k: v[:1] if i == 0 else v for i, (k, v) in enumerate(D.items())}})
    for name, edited, fragments in [
        ("renamed.pt", renamed, ("generator", "does not fit", "missing: net.0.weight", "not expected: body.0.weight")),
        ("resized.pt", resized, ("discriminator", "does not fit", "size mismatch")),
    ]:
        torch.save(edited, tmp_path / name)
        assert_one_line_error(run(f"resume={tmp_path / name}", cwd=tmp_path), *fragments)
    sampled = run(f"ckpt={tmp_path / 'renamed.pt'}", cwd=tmp_path, tool="gan-sample")
    assert sampled.returncode == 2 and "Traceback" not in sampled.stderr, sampled.stderr
    assert sampled.stderr.strip().splitlines() == [sampled.stderr.strip()] and "does not fit" in sampled.stderr


# --- precision and compile -----------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["bf16", "16"])
def test_reduced_precision_trains_on_cpu(precision, tmp_path):
    result = train(tiny_config("model=wgan_gp", f"trainer.precision={precision}", "trainer.steps=3"), tmp_path)
    assert all(torch.isfinite(torch.tensor(v)) for v in result["logged"].values())
    state = checkpoint.load(tmp_path)
    assert str(state["config"]["trainer"]["precision"]) == precision
    assert (state["scalers"]["D"] is not None) == (precision == "16")


def test_gradient_penalty_is_float32_under_autocast():
    """In bf16 the penalty of a linear critic D(x) = w.x still comes out as (||w|| - 1)^2, exactly in fp32."""
    D = torch.nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        D.weight.copy_(torch.tensor([[0.1234567, -2.345678, 0.5]]))
    x = torch.randn(5, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        norms = losses.input_gradient_norm(lambda v: D(v).squeeze(1), x, create_graph=True)
    assert norms.dtype == torch.float32
    assert torch.allclose(norms, D.weight.norm().expand(5), rtol=0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["dcgan", "wgan_gp"])
def test_compiled_nets_train(model, tmp_path):
    # wgan_gp: the penalty's double backward runs through the bare critic (compiled code cannot take it).
    result = train(tiny_config(f"model={model}", "trainer.compile=true", "trainer.steps=3"), tmp_path)
    state = checkpoint.load(tmp_path)
    assert result["step"] == 3 and not any(k.startswith("_orig_mod") for k in state["nets"]["G"])


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("override,message", [
    ("trainer.precision=fp8", "unknown trainer.precision 'fp8'; choose 32, bf16 or 16"),
    ("trainer.compile=yes", "trainer.compile must be true or false"),
    ("trainer.keep_checkpoints=-1", "trainer.keep_checkpoints must be a non-negative integer"),
    ("dataset.resolution=24", "power-of-two side"),
    ("optimizer.schedule=step", "unknown optimizer.schedule 'step'"),
])
def test_bad_values_are_caught_before_any_work(override, message, tmp_path):
    with pytest.raises(UserError, match=message):
        train(tiny_config(override), tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_an_unwritable_output_folder_is_one_line(tmp_path):
    (tmp_path / "a_file").write_text("")
    result = run(*TINY, f"hydra.run.dir={tmp_path / 'a_file' / 'run'}", cwd=tmp_path)
    assert_one_line_error(result, "cannot write the run to", "is a file, not a folder")
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        result = run(*TINY, f"hydra.run.dir={locked / 'run'}", cwd=tmp_path)
        assert_one_line_error(result, "no write permission")


@pytest.mark.parametrize("arg,message", [
    ("trainer.batch_size=0", "trainer.batch_size must be a positive integer, got 0"),
    ("trainer.n_critic=0", "trainer.n_critic must be a positive integer, got 0"),
    ("trainer.precision=fp8", "unknown trainer.precision 'fp8'"),
    ("dataset.resolution=48", "power-of-two side of at least 16, got 48x48"),
    ("optimizer.decay_start=-5", "optimizer.decay_start must be a step count or a fraction of the run in (0, 1), got -5"),
])
def test_bad_values_on_the_command_line_leave_no_run_folder(arg, message, tmp_path):
    assert_one_line_error(run(*TINY, arg, cwd=tmp_path), message)
    assert not (tmp_path / "outputs").exists()
