"""The training step reads nothing back to the host between logging steps: no `.item()`, `.tolist()`,
`bool()`, `float()` or `int()` of a tensor in gan-cli's code (on a GPU each would wait for the queued work).
On the CPU the calls are counted; where CUDA is present the loop also runs under
torch.cuda.set_sync_debug_mode("error"), which turns any synchronising call into an error."""

import collections
import sys
from pathlib import Path

import pytest
import torch

from gan_cli import safety
from gan_cli.train import train
from tests.conftest import tiny_config

PACKAGE = Path(sys.modules["gan_cli"].__file__).parent
READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__")
# Random draws made on the host by design, from generators of their own that stay on the CPU (so a resume
# on another device restores them): crop positions and flips of translation and super-resolution data,
# and CycleGAN's history pool. They read host tensors only.
HOST_DRAWS = {("translation.py", "__call__"), ("translation.py", "query"), ("superres.py", "next")}


def counting_reads(monkeypatch, every_step=None) -> collections.Counter:
    """(file, function) -> tensor reads made by gan-cli's code from the end of step 1's updates to the end of
    step 4's (in runs of 4 steps whose only logging step is the last). `every_step(guard)` runs after each
    step's updates, as the loop's own code would."""
    counting = [False]
    sites = collections.Counter()

    def counted(name):
        original = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            if counting[0]:
                caller = sys._getframe(1)
                path = Path(caller.f_code.co_filename)
                if PACKAGE in path.parents:
                    sites[(path.name, caller.f_code.co_name)] += 1
            return original(self, *args, **kwargs)
        return read

    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, counted(name))
    track = safety.NonFiniteGuard.track

    def tracked(self, step, losses):
        track(self, step, losses)
        counting[0] = step < 4
        if every_step:
            every_step(self)

    monkeypatch.setattr(safety.NonFiniteGuard, "track", tracked)
    return sites


def four_steps(model, *overrides):
    return tiny_config(f"model={model}", "trainer.steps=4", "trainer.log_every=100", *overrides)


# A preset of every game and every kind of conditioning, and the updates that differ (WGAN's clipping, the
# gradient penalty); StyleGAN2 also with its lazy R1 and path-length steps inside the counted steps.
CASES = [(model,) for model in ("dcgan", "wgan", "wgan_gp", "acgan", "infogan", "sngan_projection", "progan",
                                "stylegan2", "pix2pix", "cyclegan", "cycada", "srgan")] + [
    ("stylegan2", "game.r1_every=2", "game.pl_weight=2", "game.pl_every=3")]


@pytest.mark.parametrize("case", CASES, ids=" ".join)
def test_no_tensor_is_read_on_the_host_between_logging_steps(case, monkeypatch, tmp_path):
    model = case[0]
    sites = counting_reads(monkeypatch)
    assert train(four_steps(*case), tmp_path)["step"] == 4
    if model in ("pix2pix", "cyclegan", "cycada", "srgan"):
        assert set(sites) <= HOST_DRAWS, sites
    else:
        assert not sites, sites


def test_points_data_too_and_the_count_sees_a_read(monkeypatch, tmp_path):
    sites = counting_reads(monkeypatch)
    assert train(four_steps("wgan_gp", "dataset=toy2d"), tmp_path / "a")["step"] == 4
    assert not sites, sites
    # A guard that asked every step whether a loss went bad would read a tensor each time (steps 1 to 3).
    sites = counting_reads(monkeypatch, every_step=lambda guard: guard.problem())
    assert train(four_steps("wgan_gp", "dataset=toy2d"), tmp_path / "b")["step"] == 4
    assert sites == {("safety.py", "problem"): 3}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("model", ["dcgan", "wgan_gp", "stylegan2", "acgan"])
def test_the_cuda_step_never_synchronises(model, tmp_path):
    cfg = four_steps(model, "trainer.device=cuda")
    track = safety.NonFiniteGuard.track

    def tracked(self, step, losses):
        track(self, step, losses)
        torch.cuda.set_sync_debug_mode("error" if step < 4 else "default")

    safety.NonFiniteGuard.track = tracked
    try:
        assert train(cfg, tmp_path)["step"] == 4
    finally:
        safety.NonFiniteGuard.track = track
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_toy2d_run_from_cuda_resumes_on_the_cpu(tmp_path):
    # The points' generator stays on the host, so its state means the same on either device.
    from gan_cli import checkpoint

    train(tiny_config("model=gan", "dataset=toy2d", "trainer.device=cuda"), tmp_path)
    cfg = tiny_config("model=gan", "dataset=toy2d", "trainer.device=cpu", "trainer.steps=4", f"resume={tmp_path}")
    assert train(cfg, tmp_path)["step"] == 4 and checkpoint.load(tmp_path)["step"] == 4
